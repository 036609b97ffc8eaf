"""The Python-backend ``model.py`` that every python-backend version carries.

The source lives in ``templates/model.py`` (package data) so it can be read,
linted and copied verbatim; it is not imported by edgeopt itself because it
needs Triton's ``triton_python_backend_utils``, which only exists inside the
Python backend stub.
"""

from __future__ import annotations

import importlib.util
import os
import py_compile
from importlib import resources
from pathlib import Path

MODEL_PY = "model.py"


#: Template per artefact format: TensorFlow for SavedModels, ONNX Runtime (no TensorFlow) for ONNX.
TEMPLATES = {"savedmodel": "model.py", "onnx": "onnx_model.py"}


def model_py_source(flavour: str = "savedmodel") -> str:
    if flavour not in TEMPLATES:
        raise ValueError(f"no python-backend model.py for format {flavour!r}; known: {', '.join(TEMPLATES)}")
    return resources.files("edgeopt.triton").joinpath("templates", TEMPLATES[flavour]).read_text()


def write_model_py(version_dir: Path, *, flavour: str = "savedmodel") -> Path:
    """Write model.py (and its bytecode) into a (staging) version dir, fsynced.

    The Python backend stub runs an isolated embedded interpreter that ignores
    PYTHONDONTWRITEBYTECODE, so on first import it would write ``__pycache__``
    into the published version: the repository would change under Triton,
    and Triton would see the version as modified and reload it on the next
    load request.  Shipping the bytecode (hash-checked, so copies with new
    mtimes stay valid) avoids that whenever the stub's Python matches ours.
    """
    dest = version_dir / MODEL_PY
    with open(dest, "w") as fh:
        fh.write(model_py_source(flavour))
        fh.flush()
        os.fsync(fh.fileno())
    pyc = Path(importlib.util.cache_from_source(str(dest)))
    py_compile.compile(
        str(dest), cfile=str(pyc), doraise=True, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH
    )
    for path, flags in ((pyc, os.O_RDONLY), (pyc.parent, os.O_RDONLY | os.O_DIRECTORY)):
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return dest
