"""Path rules (issue 10 item 3): full-match patterns, no empty / '.' / '..' segments, containment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgeopt.errors import InputError, SpecError
from edgeopt.spec import RELATIVE_PATH_PATTERN, URI_PATTERN, contained, resolve_uri


@pytest.mark.parametrize(
    "uri", ["pvc://models", "pvc://models/add", "pvc://models/add/", "file:///srv/models/add", "pvc://m-1/a.b/c_d"]
)
def test_good_uris(uri: str) -> None:
    assert re.fullmatch(URI_PATTERN, uri)
    resolve_uri(uri, base=Path("/nonexistent-root"), contain=False)


@pytest.mark.parametrize(
    "uri",
    [
        "pvc://models//etc",
        "pvc://models/../etc",
        "pvc://models/./add",
        "pvc://models/add\n",
        "file:///",
        "file://relative/x",
        "file:////etc",
        "s3://bucket/x",
        "pvc://Models/x",
        "pvc://models/a b",
    ],
)
def test_bad_uris(uri: str) -> None:
    with pytest.raises(SpecError):
        resolve_uri(uri, base=Path("/nonexistent-root"))


@pytest.mark.parametrize("path", ["/etc/passwd", "a//b", "a/", "", "x\n", " a"])
def test_bad_relative_paths(path: str) -> None:
    assert not re.fullmatch(RELATIVE_PATH_PATTERN, path)


def test_trailing_newline_is_not_accepted_by_a_dollar_anchor() -> None:
    """``re.match('^x$', 'x\\n')`` matches; the spec's patterns are full matches."""
    from edgeopt.spec import MODEL_NAME_PATTERN

    assert re.match(MODEL_NAME_PATTERN, "add\n") and not re.fullmatch(MODEL_NAME_PATTERN, "add\n")


def test_containment_follows_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "claim"
    (root / "model").mkdir(parents=True)
    (root / "model" / "in.pb").write_text("x")
    (root / "model" / "out.pb").symlink_to("/etc/hostname")
    (root / "model" / "up").symlink_to(tmp_path)
    assert contained(root, root / "model" / "in.pb", "graph") == (root / "model" / "in.pb").resolve()
    with pytest.raises(InputError, match="outside"):
        contained(root, root / "model" / "out.pb", "graph")
    with pytest.raises(InputError, match="outside"):
        contained(root, root / "model" / "up", "uri")
    with pytest.raises(InputError, match="outside"):
        resolve_uri("pvc://claim/model/up", base=tmp_path)
