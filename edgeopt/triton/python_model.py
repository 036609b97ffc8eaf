"""The Python-backend files that every python-backend version carries.

``model.py`` (one template per artefact format) and the request-batching
module it imports, ``_edgeopt_batching.py``.  The sources live in
``templates/`` (package data) so they can be read, linted and copied verbatim;
edgeopt never imports them because they need Triton's
``triton_python_backend_utils``, which only exists inside the Python backend
stub.  The stub appends the version directory to ``sys.path`` before it
imports ``model.py`` (python_backend's ``ModelContext::StubSetup``), so the
helper is found only if it is published in the same version directory.
"""

from __future__ import annotations

import importlib.util
import os
import py_compile
from importlib import resources
from pathlib import Path

MODEL_PY = "model.py"
#: Imported by every model.py template from its own version directory.
BATCHING_PY = "_edgeopt_batching.py"

#: How an OpenVINO IR version runs (precision, static shapes), imported by its model.py.
OPENVINO_PY = "_edgeopt_openvino.py"

#: Template per artefact format: TensorFlow for SavedModels, ONNX Runtime (no TensorFlow) for ONNX,
#: OpenVINO for OpenVINO IR.
TEMPLATES = {"savedmodel": "model.py", "onnx": "onnx_model.py", "openvino": "openvino_model.py"}
#: Modules a flavour's model.py imports from its own version directory, besides the batching one.
HELPERS = {"openvino": (OPENVINO_PY,)}


def _template(name: str) -> str:
    return resources.files("edgeopt.triton").joinpath("templates", name).read_text()


def model_py_source(flavour: str = "savedmodel") -> str:
    if flavour not in TEMPLATES:
        raise ValueError(f"no python-backend model.py for format {flavour!r}; known: {', '.join(TEMPLATES)}")
    return _template(TEMPLATES[flavour])


def write_python_model(version_dir: Path, *, flavour: str = "savedmodel") -> list[Path]:
    """Write model.py and the batching module it imports (with their bytecode) into a (staging) version dir.

    The flavour is checked before anything is written.
    """
    model_py = model_py_source(flavour)
    helpers = [_write_module(version_dir / name, _template(name)) for name in (BATCHING_PY, *HELPERS.get(flavour, ()))]
    return [*helpers, _write_module(version_dir / MODEL_PY, model_py)]


def _write_module(dest: Path, source: str) -> Path:
    """Write one module and its bytecode, fsynced.

    The Python backend stub runs an isolated embedded interpreter that ignores
    PYTHONDONTWRITEBYTECODE, so on first import it would write ``__pycache__``
    into the published version: the repository would change under Triton,
    and Triton would see the version as modified and reload it on the next
    load request.  Shipping the bytecode (hash-checked, so copies with new
    mtimes stay valid) avoids that whenever the stub's Python matches ours.
    """
    with open(dest, "w") as fh:
        fh.write(source)
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
