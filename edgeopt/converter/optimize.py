"""Stage 3 — optimize: the classic inference graph transforms, on a frozen GraphDef.

Written here rather than taken from ``optimize_for_inference_lib`` because
that library only folds a batch norm sitting *directly* on a Conv2D with
*directly* constant weights, knows nothing of FusedBatchNormV3 behind an
Identity, and renames nothing safely.  Every transform keeps the signature:
input placeholders and output nodes are never removed or renamed, and the
result is checked to import.  The transforms themselves live in
``edgeopt.converter.transforms``.
"""

from __future__ import annotations

import os
from typing import Any

from edgeopt.converter.graph_model import FrozenModel, op_counts
from edgeopt.converter.transforms import REGISTRY
from edgeopt.errors import ConversionError, SpecError
from edgeopt.spec import QUANTIZE_NODES_MESSAGE, TRANSFORMS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

#: quantize_nodes is in the spec's enum only to be refused with a reason.
assert set(REGISTRY) | {"quantize_nodes"} == set(TRANSFORMS), "spec.TRANSFORMS and the transform registry disagree"


def _check_names(transforms: list[str]) -> None:
    for i, name in enumerate(transforms):
        if name == "quantize_nodes":
            raise SpecError(f"spec.optimize.transforms[{i}]: {QUANTIZE_NODES_MESSAGE}")
        if name not in REGISTRY:
            raise SpecError(f"spec.optimize.transforms[{i}]: unknown transform {name!r}; known: {', '.join(REGISTRY)}")


def _check_result(graph_def: Any, frozen: FrozenModel) -> None:
    names = {n.name for n in graph_def.node}
    lost = [e.node for e in frozen.inputs + frozen.outputs if e.node not in names]
    if lost:
        raise ConversionError(f"optimization lost signature node(s) {', '.join(lost)}; this is a bug in edgeopt")
    try:
        with tf.Graph().as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
    except (ValueError, tf.errors.OpError) as exc:
        raise ConversionError(f"the optimized graph does not import: {str(exc)[:400]}; this is a bug") from exc


def optimize(frozen: FrozenModel, transforms: list[str]) -> tuple[FrozenModel, list[dict[str, Any]]]:
    """Apply the transforms in order; return the new model and what each one changed."""
    _check_names(transforms)
    protected = {e.node for e in frozen.inputs + frozen.outputs}
    graph_def = frozen.graph_def
    steps = []
    for name in transforms:
        before = len(graph_def.node)
        try:
            graph_def, changed, details = REGISTRY[name](graph_def, protected)
        except (tf.errors.OpError, ValueError, KeyError) as exc:
            raise ConversionError(f"transform {name} failed: {str(exc).splitlines()[0][:400]}") from exc
        step = {"transform": name, "changed": changed, "opsBefore": before, "opsAfter": len(graph_def.node)}
        steps.append({**step, **details})
    _check_result(graph_def, frozen)
    result = FrozenModel(graph_def, frozen.inputs, frozen.outputs, {"ops": op_counts(graph_def)})
    return result, steps
