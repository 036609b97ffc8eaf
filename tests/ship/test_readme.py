"""The README and docs/ are documentation the tests hold to: they cannot rot silently.

The README is the front door (short, a test keeps it so); each subject lives
in one docs/ page, and each check below reads the page that owns its fact.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

from edgeopt import errors
from edgeopt.spec import parse_manifest
from tests.ship import readme_fields

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()
README_LIMIT_BYTES = 12 * 1024


def page(name: str) -> str:
    return (DOCS / name).read_text()


def all_pages() -> dict[Path, str]:
    """The README and every docs/ page, by path."""
    paths = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    return {p: p.read_text() for p in paths}


def prose(text: str) -> str:
    """The text without fenced code blocks, whose `#` lines are shell comments, not headings."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6} (.+)$", prose(text), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_readme_is_a_short_front_door() -> None:
    size = len(README.encode())
    assert size <= README_LIMIT_BYTES, f"README.md is {size} bytes; move detail into docs/ (limit {README_LIMIT_BYTES})"
    for section in ("## Try it", "## Install with Helm", "## A first OptimizedModel", "## Documentation"):
        assert re.search(rf"^{re.escape(section)}", README, re.M), f"README lacks {section!r}"


def test_every_docs_page_is_linked_from_the_readme_and_the_index() -> None:
    pages = sorted(p.name for p in DOCS.glob("*.md") if p.name != "README.md")
    assert len(pages) >= 8, pages
    index = page("README.md")
    for name in pages:
        assert f"](docs/{name})" in README, f"README.md does not link docs/{name}"
        assert f"]({name})" in index, f"docs/README.md does not list {name}"


def test_relative_links_and_anchors_resolve() -> None:
    for path, text in all_pages().items():
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`\n]*`", "``", prose(text))):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            where = f"{path.relative_to(ROOT)} links {target}"
            assert dest.exists(), f"{where}: no such file"
            if anchor:
                assert dest.suffix == ".md", f"{where}: an anchor into a file that is not markdown"
                assert anchor in anchors(dest.read_text()), f"{where}: no such heading"


def test_field_reference_matches_spec() -> None:
    text = page("reference.md")
    assert readme_fields.render(text) == text, (
        "docs/reference.md's OptimizedModel field reference is stale; "
        "run .venv/bin/python -m tests.ship.readme_fields --write"
    )


def test_field_reference_is_not_empty() -> None:
    table = page("reference.md").split(readme_fields.BEGIN)[1].split(readme_fields.END)[0]
    for path in ("spec.source.uri", "spec.tensorrt.precision", "spec.target.repository", "spec.converter.image"):
        assert f"`{path}`" in table


def error_classes() -> list[type[errors.EdgeoptError]]:
    """Every EdgeoptError subclass in edgeopt/, found by importing each module that defines a `reason`.

    The modules are picked by reading their source (not by importing the whole
    package, which would import TensorFlow).
    """
    for path in sorted((ROOT / "edgeopt").rglob("*.py")):
        if re.search(r"^class \w+\(\w+\):(?:\n    .*|\n)*?\n    reason = ", path.read_text(), re.M):
            importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))

    def walk(cls: type[errors.EdgeoptError]) -> list[type[errors.EdgeoptError]]:
        return [c for sub in cls.__subclasses__() for c in (sub, *walk(sub))]

    # The product's reasons only: the dev harness (edgeopt_dev, e.g. the demo's DemoFailed) is not
    # what a user's resource or converter reports, and is imported or not depending on test order.
    return [c for c in walk(errors.EdgeoptError) if c.__module__.split(".")[0] == "edgeopt"]


def test_every_failure_reason_has_troubleshooting() -> None:
    """A reason with its own exit code has its own heading; every other reason is named on the page."""
    from edgeopt.operator import job_output

    text = page("troubleshooting.md")
    kinds = error_classes()
    assert len(kinds) >= 15, [k.__name__ for k in kinds]
    for kind in kinds:
        parent = kind.__mro__[1]
        if kind.exit_code != getattr(parent, "exit_code", None):
            heading = rf"^### {kind.reason} \(exit {kind.exit_code}\)$"
            assert re.search(heading, text, re.M), f"no troubleshooting heading for {kind.reason}"
    named = {k.reason for k in kinds} | set(job_output.FAILURE_REASONS) | {job_output.INVALID_JOB_OUTPUT}
    for reason in sorted(named - {errors.EdgeoptError.reason}):
        named_here = f"`{reason}`" in text or re.search(rf"^### {reason} ", text, re.M)
        assert named_here, f"troubleshooting never names {reason}"


def test_the_two_commands_and_setup_are_documented() -> None:
    assert "make demo" in README and "make test" in README
    development = page("development.md")
    assert "make demo" in development and "make test" in development
    assert ".venv/bin/edgeopt" in development
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:.*\n\t\$\(BIN\)/edgeopt-dev demo", makefile, re.M), "make demo must run edgeopt-dev demo"
    assert re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci/run").read_text()


def test_version_facts_are_stated() -> None:
    text = page("compatibility.md")
    assert "TensorFlow ≤ 2.17" in text
    assert "25.02" in text and "backend: python" in text
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG TENSORFLOW_BASE=(nvcr\.io/nvidia/tensorflow:\S+)$", dockerfile, re.M)
    assert base and base.group(1) in text, "compatibility.md must name the converter base image the Dockerfile pins"


def test_local_paths_mentioned_exist() -> None:
    pattern = r"\b((?:examples|deploy|charts|crds|docs|bench|harness|tests|edgeopt)/[\w./-]+\.(?:yaml|json|md|py))"
    for path, text in all_pages().items():
        for mentioned in sorted(set(re.findall(pattern, text))):
            assert (ROOT / mentioned).exists(), f"{path.relative_to(ROOT)} mentions {mentioned}, which does not exist"
    # the chart and the code point readers at docs/ pages too
    chart_and_code = [
        *(ROOT / "charts").rglob("*.yaml"),
        *(ROOT / "charts").rglob("*.json"),
        *(ROOT / "edgeopt").rglob("*.py"),
        *(ROOT / "harness").rglob("*.py"),
        ROOT / "Makefile",
    ]
    for path in [*chart_and_code, ROOT / "Dockerfile"]:
        for mentioned in sorted(set(re.findall(r"\b(docs/[\w.-]+\.md)", path.read_text()))):
            assert (ROOT / mentioned).exists(), f"{path.relative_to(ROOT)} mentions {mentioned}, which does not exist"


def test_readme_first_model_is_valid_and_agrees_with_its_example() -> None:
    """The README's shortened OptimizedModel parses, and each value it shows is the example file's."""
    (block,) = re.findall(r"^```yaml\n(.*?)^```", README, re.M | re.S)
    shown = yaml.safe_load(block)
    model = parse_manifest(shown)
    example_path = re.search(r"\]\((examples/[\w.-]+\.yaml)\)", README)
    assert example_path, "README's first OptimizedModel must link the example it shortens"
    example = yaml.safe_load((ROOT / example_path.group(1)).read_text())

    def agree(part: object, whole: object, where: str) -> None:
        if isinstance(part, dict):
            assert isinstance(whole, dict), where
            for key, value in part.items():
                assert key in whole, f"README shows {where}.{key}, which {example_path.group(1)} lacks"
                agree(value, whole[key], f"{where}.{key}")
        else:
            assert part == whole, f"README shows {where} = {part!r}; {example_path.group(1)} has {whole!r}"

    agree(shown, example, "")
    assert model.name == example["metadata"]["name"]


def backend_table() -> tuple[list[str], list[list[str]]]:
    """docs/install.md's backend table: its header cells and its rows' cells."""
    text = page("install.md")
    rows = []
    for line in text[text.index("| `target.backend` |") :].splitlines():
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    header, _, *body = rows
    return header, body


def test_backend_table_names_the_triton_image_each_backend_needs() -> None:
    """Which image serves what is the first thing an installer needs; "TensorFlow in Triton's env" is not enough."""
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


@pytest.mark.parametrize(
    "option",
    [
        "crds.enabled=false",
        "meta.helm.sh/release-name",
        "meta.helm.sh/release-namespace",
        "app.kubernetes.io/managed-by=Helm",
    ],
)
def test_install_says_how_to_reinstall_over_the_kept_crd(option: str) -> None:
    text = page("install.md")
    section = text[text.index("## Uninstalling, and installing again over the kept CRD") :]
    section = section[: section.index("\n## ")]
    assert option in section
    values = yaml.safe_load((ROOT / "charts" / "edgeopt" / "values.yaml").read_text())
    assert values["crds"]["keep"] is True, "the section explains the kept CRD; keep is the chart's default"
    assert "helm.sh/resource-policy" in (ROOT / "charts" / "edgeopt" / "templates" / "crd.yaml").read_text()
