"""The Python-backend ``model.py`` that every python-backend version carries.

The source lives in ``templates/model.py`` (package data) so it can be read,
linted and copied verbatim; it is not imported by edgeopt itself because it
needs Triton's ``triton_python_backend_utils``, which only exists inside the
Python backend stub.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

MODEL_PY = "model.py"


def model_py_source() -> str:
    return resources.files("edgeopt.triton").joinpath("templates", "model.py").read_text()


def write_model_py(version_dir: Path) -> Path:
    """Write model.py into a (staging) version dir and fsync it: publishing is atomic only if durable."""
    dest = version_dir / MODEL_PY
    with open(dest, "w") as fh:
        fh.write(model_py_source())
        fh.flush()
        os.fsync(fh.fileno())
    return dest
