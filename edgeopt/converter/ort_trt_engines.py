"""ONNX stage — TensorRT engines in the Job: ORT's TensorRT accelerator builds them here before publishing.

For ``target.backend: onnxruntime`` on GPU with ``tensorrt.enabled`` and
``tensorrt.buildEngines``, the Job (on the GPU kind that serves,
``converter.nodeSelector``) runs ONNX Runtime's TensorRT EP with the very
parameters config.pbtxt gives Triton (``triton.config.trt_accelerator_params``:
no precision flags, the profile shapes, workspace) at batch 1 and at the
largest batch, so:

- a graph TensorRT rejects, or an engine it cannot build, fails the Job with
  the reason, not Triton's first load;
- the report records the build time, engine count and size on that GPU: what
  the first load in Triton costs before ``triton.engineCache`` keeps them.

The engines are built in a scratch folder and not published: ORT names its
cache files by a hash that includes its own version, so they would only be
reused by a Triton whose ONNX Runtime matches the converter's.  Needs the
``onnxruntime-gpu`` build with the TensorRT EP and TensorRT's libraries (the
GPU converter image); elsewhere the stage is skipped with the reason.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.artifact import TensorInfo
from edgeopt.errors import ConversionError

#: Triton's onnxruntime_backend keys that differ from ONNX Runtime's TensorRT EP option names.
TRITON_TO_ORT = {"max_workspace_size_bytes": "trt_max_workspace_size"}
_NUMPY = {
    "FP32": np.float32,
    "FP16": np.float16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "INT8": np.int8,
    "BOOL": np.bool_,
}


def ort_options(triton_params: Sequence[tuple[str, str]], cache_dir: Path) -> dict[str, str]:
    """ORT's TensorRT EP options for Triton's accelerator parameters, caches moved into ``cache_dir``."""
    options = {TRITON_TO_ORT.get(k, k): v for k, v in triton_params}
    options["trt_engine_cache_path"] = str(cache_dir / "engines")
    options["trt_timing_cache_path"] = str(cache_dir / "timing")
    return options


def zero_feeds(inputs: Sequence[TensorInfo], batch: int) -> dict[str, np.ndarray]:
    """Zeros at ``batch`` for the batch dim (-1), the declared size elsewhere; unknown dims cannot be built ahead."""
    feeds = {}
    for t in inputs:
        if any(d < 0 for d in t.shape[1:]) or t.dtype not in _NUMPY:
            raise ConversionError(
                f"cannot build TensorRT engines ahead for input {t.name!r} ({t.dtype}, shape {t.shape}): declare "
                "full shapes in spec.source.inputs, or set tensorrt.buildEngines: false (Triton builds at first load)"
            )
        shape = [batch if (i == 0 and d < 0) else d for i, d in enumerate(t.shape)]
        feeds[t.name] = np.zeros(shape, dtype=_NUMPY[t.dtype])
    return feeds


def unavailable() -> str | None:
    """Why engines cannot be built here, or None."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        return (
            "this converter's onnxruntime has no TensorRT execution provider (onnxruntime-gpu and TensorRT, the GPU "
            "converter image): Triton builds the engines at first load and keeps them on triton.engineCache"
        )
    return None


def build(
    onnx_path: Path, scratch: Path, triton_params: Sequence[tuple[str, str]], inputs: Sequence[TensorInfo], top: int
) -> dict[str, Any]:
    """Build the engines at batch 1 and ``top`` with Triton's parameters; what the report records."""
    import onnxruntime as ort

    options = ort_options(triton_params, scratch)
    t0 = time.monotonic()
    try:
        session = ort.InferenceSession(
            str(onnx_path), providers=[("TensorrtExecutionProvider", options), "CUDAExecutionProvider"]
        )
        for batch in sorted({1, max(1, top)}):
            session.run(None, zero_feeds(inputs, batch))
    except ConversionError:
        raise
    except Exception as exc:  # ORT raises its own Fail/RuntimeException types for TensorRT's errors
        first = str(exc).splitlines()[0][:400] if str(exc) else type(exc).__name__
        raise ConversionError(
            f"ONNX Runtime's TensorRT EP could not build engines for {onnx_path.name}: {first}; set "
            "tensorrt.enabled: false to serve it on the CUDA EP"
        ) from exc
    engines = sorted((scratch / "engines").glob("*.engine"))
    report = {
        "seconds": round(time.monotonic() - t0, 2),
        "engines": len(engines),
        "engineBytes": sum(p.stat().st_size for p in engines),
        "batches": sorted({1, max(1, top)}),
        "providers": session.get_providers(),
        "onnxruntime": ort.__version__,
    }
    shutil.rmtree(scratch, ignore_errors=True)
    return report
