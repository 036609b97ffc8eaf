"""Durable small-file writes for the model repository: what a crash or a reader may never see half of.

publish.py (config.pbtxt, the report, the versions) and ownership.py (the
owner record) share these, so every file edgeopt writes next to a model is
made the same way: temp file in the same directory, fsync, rename, fsync of
the directory.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durably(path: Path, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def replace_file_atomically(path: Path, text: str) -> None:
    """Temp file in the same dir + fsync + rename + fsync(dir): readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        write_file_durably(tmp, text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
