"""The node agent's subPath mounts behave like kubelet's: made with the volume's mode, never outside it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edgeopt_dev.podspec import CannotEmulate, NotYet, subpath_source


def test_missing_folders_are_made_with_the_volume_roots_mode(tmp_path: Path) -> None:
    volume = tmp_path / "claim"
    volume.mkdir()
    os.chmod(volume, 0o2775)
    got = subpath_source(volume, "repo/add")
    assert got == (volume / "repo" / "add").resolve() and got.is_dir()
    for folder in (volume / "repo", got):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o2775


def test_existing_folders_are_used_as_they_are(tmp_path: Path) -> None:
    (tmp_path / "v" / "m").mkdir(parents=True)
    os.chmod(tmp_path / "v" / "m", 0o700)
    assert subpath_source(tmp_path / "v", "m") == (tmp_path / "v" / "m").resolve()
    assert stat.S_IMODE((tmp_path / "v" / "m").stat().st_mode) == 0o700


def test_a_symlink_out_of_the_volume_is_refused(tmp_path: Path) -> None:
    volume = tmp_path / "claim"
    volume.mkdir()
    (tmp_path / "outside").mkdir()
    (volume / "evil").symlink_to(tmp_path / "outside")
    with pytest.raises(NotYet, match="outside its volume"):
        subpath_source(volume, "evil/x")
    assert not (tmp_path / "outside" / "x").exists()


@pytest.mark.parametrize("sub", ["../x", "/etc", "a/../../b"])
def test_absolute_and_dotdot_paths_are_refused(tmp_path: Path, sub: str) -> None:
    with pytest.raises(CannotEmulate):
        subpath_source(tmp_path, sub)
