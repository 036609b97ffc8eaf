"""Shared pytest set-up. Fixtures live in tests/fixtures/, one module per real component."""

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.containers",
    "tests.fixtures.k8s",
    "tests.fixtures.kueue",
    "tests.fixtures.triton",
]
