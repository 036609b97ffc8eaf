"""Stage 4 — export: wrap the optimized GraphDef as a SavedModel with a serving signature.

Triton (and TF-TRT, which reads SavedModels) want a SavedModel, not a
GraphDef.  The graph is imported into a ``wrap_function``, pruned to the
signature's inputs and outputs, and saved behind a ``serving_default``
signature whose keys are the endpoints' keys (input names and output node
names for graph formats, the original keys for SavedModel/Keras).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.artifact import TensorInfo
from edgeopt.converter.dtypes import triton_dtype
from edgeopt.converter.graph_model import FrozenModel, ModelFn
from edgeopt.errors import ConversionError, InputError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

SIGNATURE_KEY = "serving_default"


def export_saved_model(model: FrozenModel, directory: Path, *, jit_compile: bool = False) -> None:
    """Save ``model`` as a SavedModel; ``jit_compile`` makes its serving function XLA-compiled (must-compile)."""
    graph_def = model.graph_def

    def _import() -> None:
        tf.compat.v1.import_graph_def(graph_def, name="")

    try:
        wrapped = tf.compat.v1.wrap_function(_import, [])
        graph = wrapped.graph
        feeds = [graph.get_tensor_by_name(e.tensor) for e in model.inputs]
        fetches = [graph.get_tensor_by_name(e.tensor) for e in model.outputs]
        pruned = wrapped.prune(feeds, fetches)
    except (ValueError, KeyError, tf.errors.OpError) as exc:
        raise ConversionError(f"cannot wrap the optimized graph as a function: {str(exc)[:400]}") from exc
    specs = [
        tf.TensorSpec(
            [None if d < 0 else d for d in e.shape] if e.shape is not None else None,
            tf.as_dtype(feeds[k].dtype),
            name=e.key,
        )
        for k, e in enumerate(model.inputs)
    ]
    keys = [e.key for e in model.outputs]

    @tf.function(input_signature=specs, autograph=False, jit_compile=jit_compile or None)
    def serve(*args: Any) -> dict[str, Any]:
        results = pruned(*args)
        return {k: tf.identity(v, name=k) for k, v in zip(keys, results, strict=False)}

    module = tf.Module()
    module.graph_function = pruned  # keep it tracked
    module.serve = serve
    try:
        tf.saved_model.save(module, str(directory), signatures={SIGNATURE_KEY: serve.get_concrete_function()})
    except (ValueError, TypeError, tf.errors.OpError) as exc:
        raise ConversionError(f"saving the SavedModel failed: {str(exc).splitlines()[0][:400]}") from exc


def _shape(spec: Any) -> list[int]:
    if spec.shape.rank is None:
        return []
    return [-1 if d is None else int(d) for d in spec.shape.as_list()]


def read_signature(
    directory: Path, signature_key: str = SIGNATURE_KEY
) -> tuple[Any, list[TensorInfo], list[TensorInfo]]:
    """Load a SavedModel and describe its signature as it really is (Triton dtypes, -1 dims)."""
    obj = tf.saved_model.load(str(directory))
    func = obj.signatures[signature_key]
    in_specs = func.structured_input_signature[1]
    inputs = [TensorInfo(k, triton_dtype(s.dtype.name), _shape(s)) for k, s in sorted(in_specs.items())]
    outputs = [TensorInfo(k, triton_dtype(s.dtype.name), _shape(s)) for k, s in sorted(func.structured_outputs.items())]
    return obj, inputs, outputs


def saved_model_runner(obj: Any, signature_key: str = SIGNATURE_KEY) -> ModelFn:
    func = obj.signatures[signature_key]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            result = func(**{k: tf.constant(v) for k, v in feeds.items()})
        except (tf.errors.InvalidArgumentError, TypeError) as exc:
            raise InputError(f"the converted model rejected the inputs: {str(exc).splitlines()[0][:300]}") from exc
        return {k: np.asarray(v) for k, v in result.items()}

    return run
