"""Fixtures for the container tests: podman with the harness's config, and the images built here.

They skip only where podman genuinely cannot run (not installable, or a
container cannot start); a build that fails is a failure, not a skip. CI
installs podman (``.ci/run`` -> ``make test`` -> ``edgeopt dev images``).
"""

from __future__ import annotations

import pytest

from edgeopt_dev.containers import ContainerToolError, ensure_tools, probe


@pytest.fixture(scope="session")
def podman_base() -> str:
    """The Debian stand-in base, once podman is known to run containers here."""
    from edgeopt_dev.images import build_base

    try:
        ensure_tools()
    except ContainerToolError as exc:
        pytest.skip(reason=f"podman cannot be installed here: {exc}")
    base = build_base()
    result = probe(base)
    if not result.ok:
        pytest.skip(reason=result.reason)
    return base


@pytest.fixture(scope="session")
def images(podman_base: str) -> dict[str, str]:
    """target -> local image name, for every target built here (cached: seconds when nothing changed)."""
    from edgeopt_dev.images import LOCAL_TARGETS, build_target

    built = {}
    for target in LOCAL_TARGETS:
        result = build_target(target, podman_base)
        print(f"\n[images] {target}: {result.image} in {result.seconds:.1f}s")
        built[target] = result.image
    return built
