"""The harness's one cache folder: Go binaries, image build state and Triton's backends live under it.

``$EDGEOPT_CACHE``, else ``$XDG_CACHE_HOME/edgeopt``, else ``~/.cache/edgeopt``.
Standard library only: ``make binaries`` reads it before any venv exists.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "EDGEOPT_CACHE"


def cache_dir() -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "edgeopt")
    return Path(base).expanduser()
