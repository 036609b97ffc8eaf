"""The README is documentation the tests hold to: it cannot rot silently."""

from __future__ import annotations

import re
from pathlib import Path

from edgeopt import errors
from tests.ship import readme_fields

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_field_reference_matches_spec() -> None:
    assert readme_fields.render(README) == README, (
        "README's OptimizedModel field reference is stale; run .venv/bin/python -m tests.ship.readme_fields --write"
    )


def test_field_reference_is_not_empty() -> None:
    table = README.split(readme_fields.BEGIN)[1].split(readme_fields.END)[0]
    for path in ("spec.source.uri", "spec.tensorrt.precision", "spec.target.repository", "spec.converter.image"):
        assert f"`{path}`" in table


def test_every_converter_failure_reason_has_troubleshooting() -> None:
    kinds = [e for e in vars(errors).values() if isinstance(e, type) and issubclass(e, errors.EdgeoptError)]
    reasons = {e.reason: e.exit_code for e in kinds if e is not errors.EdgeoptError}
    assert len(reasons) >= 7
    for reason, code in reasons.items():
        assert re.search(rf"^### {reason} \(exit {code}\)$", README, re.M), f"no troubleshooting for {reason}"


def test_the_two_commands_and_setup_are_documented() -> None:
    assert "make demo" in README and "make test" in README
    assert ".venv/bin/edgeopt" in README
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:.*\n\t\$\(BIN\)/edgeopt demo", makefile, re.M), "make demo must run edgeopt demo"
    assert re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci/run").read_text()


def test_version_facts_are_stated() -> None:
    assert "TensorFlow ≤ 2.17" in README
    assert "25.02" in README and "backend: python" in README
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG TENSORFLOW_BASE=(nvcr\.io/nvidia/tensorflow:\S+)$", dockerfile, re.M)
    assert base and base.group(1) in README, "README must name the converter base image the Dockerfile pins"


def test_local_paths_mentioned_exist() -> None:
    for path in sorted(set(re.findall(r"\b((?:examples|deploy|charts|crds)/[\w./-]+\.(?:yaml|json))", README))):
        assert (ROOT / path).exists(), f"README mentions {path}, which does not exist"



def backend_table() -> tuple[list[str], list[list[str]]]:
    """The README's backend table: its header cells and its rows' cells."""
    rows = []
    for line in README[README.index("| `target.backend` |") :].splitlines():
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    header, _, *body = rows
    return header, body


def test_backend_table_names_the_triton_image_each_backend_needs() -> None:
    """Which image serves what is the first thing an installer needs; "TensorFlow in Triton's env" is not enough."""
    import yaml

    from edgeopt.spec import BACKENDS

    header, body = backend_table()
    assert "Triton image (`triton.image`)" in header, header
    table = {row[0]: row[header.index("Triton image (`triton.image`)")] for row in body}
    assert {re.findall(r"`(\w+)`", row)[0] for row in table} == set(BACKENDS)
    values = (ROOT / "charts" / "edgeopt" / "values.yaml").read_text()
    default = yaml.safe_load(values)["triton"]["image"]["repository"]
    for row, image in table.items():
        assert re.search(r"`[\w.-]+/[\w./-]+(:[\w.-]+)?`", image), f"{row}: names no image: {image}"
        if row.startswith("`python`"):
            assert f"`{default}`" in image, f"{row}: the chart's default Triton serves the default backend"
    (tensorflow,) = [image for row, image in table.items() if row.startswith("`tensorflow`")]
    assert "`nvcr.io/nvidia/tritonserver:25.02-tf2-python-py3`" in tensorflow
    # values.yaml says the same next to triton.image, one line per backend
    triton = values[values.index("\ntriton:\n") :]
    comment = triton[triton.index("  # Triton's container image.") : triton.index("\n  image:\n")]
    for backend in BACKENDS:
        assert re.search(rf"^  #   {backend}\b", comment, re.M), f"values.yaml's triton.image comment skips {backend}"
