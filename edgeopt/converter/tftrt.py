"""Stage 5 — TF-TRT: convert the exported SavedModel with ``TrtGraphConverterV2``.

What to ask TensorRT for (parameters, engine shapes, calibration batches) is
decided in ``trt_plan`` (pure, unit-tested); this module only drives
TensorFlow.  TF-TRT exists only in TensorFlow builds linked against
TensorRT (the NVIDIA container); elsewhere the spec fails at once with
TensorRTUnavailableError and one line on what to do — it never silently
publishes an unconverted model as if it were converted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.artifact import TensorInfo
from edgeopt.converter import feeds, trt_plan
from edgeopt.converter.export import SIGNATURE_KEY
from edgeopt.errors import ConversionError, TensorRTUnavailableError
from edgeopt.spec import TensorRT

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf


def tensorrt_version() -> str | None:
    """The TensorRT version TensorFlow is linked against, or None without TensorRT."""
    try:
        from tensorflow.compiler.tf2tensorrt import _pywrap_py_utils as utils  # what trt_convert itself uses

        if not utils.is_tensorrt_enabled():
            return None
        return ".".join(str(v) for v in utils.get_linked_tensorrt_version())
    except (ImportError, AttributeError):
        return None


def check_tensorrt() -> str:
    """Fail fast (before loading anything) when the spec wants TF-TRT and there is none."""
    version = tensorrt_version()
    if version is None:
        raise TensorRTUnavailableError(trt_plan.TRT_UNAVAILABLE_HINT)
    return version


def _engine_summary(graph_def: Any) -> dict[str, Any]:
    functions = {f.signature.name: f for f in graph_def.library.function}
    engines = [n for n in graph_def.node if n.op == "TRTEngineOp"]
    for f in functions.values():
        engines.extend(n for n in f.node_def if n.op == "TRTEngineOp")
    segments = []
    for n in engines:
        seg = n.attr["segment_func"].func.name if "segment_func" in n.attr else ""
        body = functions.get(seg)
        segments.append({"name": n.name, "ops": len(body.node_def) if body is not None else None})
    return {"engines": len(engines), "segments": segments, "engineOps": sum(s["ops"] or 0 for s in segments)}


def convert(
    source_dir: Path, target_dir: Path, trt: TensorRT, inputs: list[TensorInfo], *, seed: int = 0
) -> dict[str, Any]:
    """Convert ``source_dir`` (a SavedModel with ``serving_default``) into ``target_dir``."""
    from tensorflow.python.compiler.tensorrt import trt_convert

    # The converted function takes its inputs positionally, in the signature's (sorted-key) order.
    ordered = sorted(inputs, key=lambda t: t.name)
    params = trt_plan.conversion_params(trt)
    details: dict[str, Any] = {"params": params}
    try:
        converter = trt_convert.TrtGraphConverterV2(
            input_saved_model_dir=str(source_dir), input_saved_model_signature_key=SIGNATURE_KEY, **params
        )
    except RuntimeError as exc:
        if "TensorRT" in str(exc):
            raise TensorRTUnavailableError(trt_plan.TRT_UNAVAILABLE_HINT) from exc
        raise ConversionError(f"TF-TRT could not start: {exc}") from exc
    try:
        if trt.precision == "INT8":
            arrays, origin = trt_plan.calibration_arrays(trt, ordered, seed=seed)
            batches = trt_plan.calibration_batches(arrays, ordered, trt.max_batch_size)
            details["calibration"] = {
                "source": origin,
                "samples": int(len(next(iter(arrays.values())))),
                "batches": len(batches),
            }

            def calibration_input_fn() -> Iterator[tuple[np.ndarray, ...]]:
                yield from batches

            converter.convert(calibration_input_fn=calibration_input_fn)
        else:
            converter.convert()
        if trt.build_engines:
            shapes = trt_plan.engine_shapes(ordered, trt.max_batch_size)
            details["engineShapes"] = [{k: list(v) for k, v in plan.items()} for plan in shapes]

            def input_fn() -> Iterator[tuple[np.ndarray, ...]]:
                for plan in shapes:
                    yield tuple(
                        feeds.random_inputs([TensorInfo(t.name, t.dtype, list(plan[t.name]))], seed=seed)[t.name]
                        for t in ordered
                    )

            converter.build(input_fn=input_fn)
        converter.save(str(target_dir))
    except (tf.errors.OpError, RuntimeError, ValueError) as exc:
        raise ConversionError(f"TF-TRT conversion failed: {str(exc).splitlines()[0][:400]}") from exc
    loaded = tf.saved_model.load(str(target_dir))
    graph_def = loaded.signatures[SIGNATURE_KEY].graph.as_graph_def()
    details.update(_engine_summary(graph_def))
    details["tensorrt"] = tensorrt_version()
    return details
