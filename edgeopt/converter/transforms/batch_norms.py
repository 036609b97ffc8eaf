"""``fold_batch_norms`` / ``fold_old_batch_norms``: batch norms folded into the weights before them.

    y = gamma * (P(x, W) - mean) / sqrt(var + eps) + beta
      = P(x, W * m) + (beta - mean * m)      with m = gamma / sqrt(var + eps)

for P = Conv2D, DepthwiseConv2dNative or MatMul (a Dense layer; Keras puts a
Reshape to 4-D between MatMul and a fused batch norm, which is looked
through as long as the channels stay last).  The batch norm node becomes a
BiasAdd of the same name, so its consumers, and an output of that name, keep
working.  ``fold_batch_norms`` takes FusedBatchNorm/V2/V3 and then the
decomposed form (see scale_shift.py); ``fold_old_batch_norms`` takes
BatchNormWithGlobalNormalization, the op graphs with a producer version
below 9 use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgeopt.converter.transforms.graph import (
    StepResult,
    const_value,
    constant_subgraph,
    consumers,
    drop_orphans,
    fold_into_producer,
    foldable_producer,
    node_of,
    port_of,
    private_source,
    producer_weights,
    rebuild,
)
from edgeopt.converter.transforms.scale_shift import fold_scale_shift

FUSED_BATCH_NORM_OPS = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
OLD_BATCH_NORM_OP = "BatchNormWithGlobalNormalization"

#: (batch-norm node, by_name) -> (multiplier, offset) per channel, or None when it cannot be folded.
ParamsFn = Callable[[Any, dict[str, Any]], tuple[np.ndarray, np.ndarray] | None]


def _fused_params(bn: Any, by_name: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    if "is_training" in bn.attr and bn.attr["is_training"].b:
        return None
    if "data_format" in bn.attr and bn.attr["data_format"].s not in (b"", b"NHWC"):
        return None
    values = [const_value(by_name, i) for i in bn.input[1:5]]
    if any(v is None for v in values):
        return None
    scale, offset, mean, var = (np.asarray(v, np.float64) for v in values)
    eps = bn.attr["epsilon"].f if "epsilon" in bn.attr else 1e-4
    mult = scale / np.sqrt(var + eps)
    return mult, offset - mean * mult


def _old_params(bn: Any, by_name: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    # Inputs: t, m (mean), v (variance), beta, gamma.
    values = [const_value(by_name, i) for i in bn.input[1:5]]
    if any(v is None for v in values):
        return None
    mean, var, beta, gamma = (np.asarray(v, np.float64) for v in values)
    eps = bn.attr["variance_epsilon"].f if "variance_epsilon" in bn.attr else 1e-3
    scaled = "scale_after_normalization" in bn.attr and bn.attr["scale_after_normalization"].b
    mult = (gamma if scaled else 1.0) / np.sqrt(var + eps)
    return mult, beta - mean * mult


def _keeps_channels_last(reshape: Any, by_name: dict[str, Any], channels: int) -> bool:
    shape = const_value(by_name, reshape.input[1])
    return shape is not None and shape.ndim == 1 and shape.size >= 1 and int(shape[-1]) == channels


def _producer_chain(bn: Any, by_name: dict[str, Any], users: dict[str, list[Any]], protected: set[str]) -> Any:
    """The producer feeding ``bn`` through Identities (and one Reshape after a MatMul), if every hop is private."""
    found = private_source(bn.input[0], by_name, users, protected, through=("Identity", "Reshape"))
    if found is None or not foldable_producer(found[0], users, protected):
        return None, None
    producer, hops = found
    reshapes = [h for h in hops if h.op == "Reshape"]
    if len(reshapes) > 1 or (reshapes and producer.op != "MatMul"):
        return None, None
    return producer, reshapes[0] if reshapes else None


def fold_into_producers(graph_def: Any, protected: set[str], ops: tuple[str, ...], params: ParamsFn) -> StepResult:
    by_name = {n.name: n for n in graph_def.node}
    users = consumers(graph_def)
    replaced: dict[str, Any] = {}
    extra: list[Any] = []
    for bn in graph_def.node:
        if bn.op not in ops:
            continue
        if any(port_of(i) > 0 for c in users.get(bn.name, []) for i in c.input if node_of(i) == bn.name):
            continue  # batch statistics are used: not an inference batch norm
        producer, reshape = _producer_chain(bn, by_name, users, protected)
        if producer is None or producer.name in replaced:
            continue
        weights = producer_weights(by_name, producer)
        folded = params(bn, by_name)
        if weights is None or folded is None:
            continue
        mult, bias = folded
        channels = weights[2]
        if mult.shape != (channels,) or bias.shape != (channels,):
            continue
        if reshape is not None and not _keeps_channels_last(reshape, by_name, channels):
            continue
        replaced[producer.name], replaced[bn.name], consts = fold_into_producer(
            producer,
            weights,
            mult,
            bias,
            name=bn.name,
            weights_name=f"{producer.name}/folded_weights",
            source=[bn.input[0], *(i for i in bn.input if i.startswith("^"))],
        )
        extra.extend(consts)
    count = len(extra) // 2
    if not count:
        return StepResult(graph_def, 0)
    folded_def = rebuild(graph_def, [replaced.get(n.name, n) for n in graph_def.node] + extra)
    # The old weights and batch-norm parameters (and what computed them) may now be unused.
    candidates = {n.name for n in graph_def.node if n.op not in ("Placeholder", "PlaceholderWithDefault")}
    candidates -= {n.name for n in folded_def.node if n.name in replaced}
    return StepResult(drop_orphans(folded_def, candidates & constant_subgraph(graph_def), protected), count)


def fold_batch_norms(graph_def: Any, protected: set[str]) -> StepResult:
    graph_def, fused, _ = fold_into_producers(graph_def, protected, FUSED_BATCH_NORM_OPS, _fused_params)
    graph_def, decomposed, _ = fold_scale_shift(graph_def, protected)
    return StepResult(graph_def, fused + decomposed, {"fused": fused, "decomposed": decomposed})


def fold_old_batch_norms(graph_def: Any, protected: set[str]) -> StepResult:
    return fold_into_producers(graph_def, protected, (OLD_BATCH_NORM_OP,), _old_params)
