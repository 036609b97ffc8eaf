"""One house, two wings (issue 14): the shipped package holds the product only; the harness lives apart."""

from __future__ import annotations

import subprocess
import sys
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


def test_harness_commands_say_what_is_missing_without_the_harness() -> None:
    # As in an image: the harness distribution's import hook is gone (the product's stays).
    code = (
        "import sys\n"
        "sys.meta_path = [f for f in sys.meta_path if 'edgeopt_dev' not in getattr(f, '__module__', '')]\n"
        "from edgeopt.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    for args in (["dev", "up"], ["demo"], ["samples", "add"]):
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0
        assert "development harness (edgeopt_dev)" in proc.stderr and "source checkout" in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "-c", code, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "edgeopt" in proc.stdout, "the product itself works without the harness"
