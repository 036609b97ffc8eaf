"""XLA JIT (the guide's step 5.1): what ``spec.xla.jit`` publishes and how it is measured.

The serving function is saved with ``jit_compile=True``, TensorFlow's
*must-compile* mode: a call either runs the XLA-compiled cluster or fails
(an op with no XLA kernel), so a validation call that succeeds is proof the
compiled function ran.  The report gives its latency beside the same graph
without XLA, measured in one run on the same inputs, because only such
side-by-side ratios mean anything on a shared machine.

XLA ahead-of-time compilation (``tfcompile``) is not part of pip
TensorFlow; edgeopt does not pretend to offer it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.converter import export, validate
from edgeopt.converter.graph_model import FrozenModel, ModelFn
from edgeopt.errors import ConversionError

MUST_COMPILE_ATTR = "_XlaMustCompile"


def marked_for_xla(saved_model_dir: Path) -> bool:
    """True when the SavedModel's serving function (or a function it calls) is marked must-compile."""
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((saved_model_dir / "saved_model.pb").read_bytes())
    library = sm.meta_graphs[0].graph_def.library
    return any(MUST_COMPILE_ATTR in f.attr and f.attr[MUST_COMPILE_ATTR].b for f in library.function)


def check_compiles(compiled: ModelFn, feeds: dict[str, np.ndarray]) -> None:
    """Run the must-compile function once; a failure here is XLA's, and is said to be."""
    try:
        compiled(feeds)
    except Exception as exc:  # XLA's errors (an op without an XLA kernel) arrive as several types
        raise ConversionError(
            f"XLA could not compile the serving function: {str(exc).splitlines()[0][:300]}; "
            "set spec.xla.jit: false to publish it without XLA"
        ) from exc


def xla_report(
    optimized: FrozenModel, compiled_dir: Path, compiled: ModelFn, feeds: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Latency of the XLA function against the same graph exported without XLA, side by side."""
    scratch = Path(tempfile.mkdtemp(prefix="noxla-", dir=compiled_dir.parent))
    try:
        export.export_saved_model(optimized, scratch / "model.savedmodel", jit_compile=False)
        obj, _, _ = export.read_signature(scratch / "model.savedmodel")
        plain = export.saved_model_runner(obj)
        without = validate.latency_ms(plain, feeds)
        with_xla = validate.latency_ms(compiled, feeds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "jit": True,
        "compiled": marked_for_xla(compiled_dir),
        "latencyMsWithoutXla": without,
        "latencyMsWithXla": with_xla,
        "ratio": round(with_xla / without, 3) if without > 0 else None,
    }
