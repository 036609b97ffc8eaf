"""One house, two wings (issue 14): the shipped package holds the product only; the harness lives apart."""

from __future__ import annotations

from pathlib import Path

import tomllib
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]


def test_the_product_distribution_holds_no_harness() -> None:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = conf["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(str(ROOT), include=include)
    assert "edgeopt" in packages and "edgeopt.operator" in packages
    assert not [p for p in packages if not (p == "edgeopt" or p.startswith("edgeopt."))], packages
    harness = find_packages(str(ROOT / "harness"))
    assert "edgeopt_dev" in harness
    for gone in ("dev", "demo.py", "samples.py", "triton/server.py"):
        assert not (ROOT / "edgeopt" / gone).exists(), f"edgeopt/{gone} is harness and must not ship"


def test_images_copy_only_the_product() -> None:
    allowed = [ln[1:] for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.startswith("!")]
    assert not [a for a in allowed if a.startswith("harness")], allowed


def test_the_dev_commands_are_the_harness_s_own_script() -> None:
    """`edgeopt-dev` comes with the harness distribution, `edgeopt` with the product; the contract has no exception."""
    product = tomllib.loads((ROOT / "pyproject.toml").read_text())
    harness = tomllib.loads((ROOT / "harness" / "pyproject.toml").read_text())
    assert product["project"]["scripts"] == {"edgeopt": "edgeopt.cli:main"}
    assert harness["project"]["scripts"] == {"edgeopt-dev": "edgeopt_dev.cli:main"}
    contracts = product["tool"]["importlinter"]["contracts"]
    (apart,) = [c for c in contracts if c.get("forbidden_modules") == ["edgeopt_dev"]]
    assert apart["source_modules"] == ["edgeopt"] and "ignore_imports" not in apart, apart
    makefile = (ROOT / "Makefile").read_text()
    setup = makefile.split("\n$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "harness/pyproject.toml" in setup.splitlines()[0], "a change of the harness's scripts must re-run setup"
    assert "pip install --quiet --no-deps -e ./harness" in setup, "`make setup` installs the harness and its script"
