"""The decomposed batch norm: ``(P(x, W) [+ b]) * c [+ d]`` folded into ``P(x, W * c) + (b * c + d)``.

This is an inference batch norm written out: ``tf.nn.batch_normalization``
and Keras 3 compute ``x * inv + (beta - mean * inv)`` with
``inv = gamma * rsqrt(var + eps)`` as Rsqrt/Mul/Sub/AddV2 rather than a
FusedBatchNorm.  ``c`` and ``d`` may be Consts or that arithmetic on Consts
(evaluated with numpy, no session).  P is Conv2D, DepthwiseConv2dNative or
MatMul; the last node of the chain becomes a BiasAdd of the same name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from edgeopt.converter.transforms.graph import (
    StepResult,
    const_node,
    const_value,
    constant_subgraph,
    consumers,
    copy_node,
    drop_orphans,
    follow_identity,
    node_of,
    port_of,
    rebuild,
)

PRODUCERS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")


def channel_vector(value: np.ndarray | None, channels: int) -> np.ndarray | None:
    """A per-output-channel vector from a scalar, [C] or [1, ..., 1, C] constant; else None."""
    if value is None or value.dtype.kind != "f":
        return None
    if value.size == 1:
        return np.full(channels, float(value.reshape(())), dtype=np.float64)
    if value.shape[-1] == channels and value.size == channels:
        return value.reshape(channels).astype(np.float64)
    return None


class _Chain:
    """Matching state for one graph: who consumes what, and what is already claimed."""

    def __init__(self, graph_def: Any, protected: set[str]) -> None:
        self.by_name = {n.name: n for n in graph_def.node}
        self.users = consumers(graph_def)
        self.protected = protected
        self.used: set[str] = set()

    def private(self, name: str) -> bool:
        return len(self.users.get(name, [])) == 1 and name not in self.protected

    def split_const(self, node: Any) -> tuple[str, np.ndarray] | None:
        """(the non-constant operand, the constant operand's value) of a binary op, else None."""
        data = [i for i in node.input if not i.startswith("^")]
        if len(data) != 2 or len(data) != len(node.input):
            return None
        for k in (0, 1):
            value = const_value(self.by_name, data[1 - k])
            if value is not None and const_value(self.by_name, data[k]) is None and port_of(data[k]) == 0:
                return data[k], value
        return None

    def producer_and_bias(self, x_inp: str) -> tuple[Any, Any, np.ndarray | None] | None:
        x_node = follow_identity(self.by_name, x_inp)
        bias_node, bias_value = None, None
        if x_node is not None and x_node.op in ("BiasAdd", "Add", "AddV2"):
            inner = (
                self.split_const(x_node)
                if x_node.op != "BiasAdd"
                else (x_node.input[0], const_value(self.by_name, x_node.input[1]))
            )
            if inner is None or inner[1] is None:
                return None
            bias_node, bias_value = x_node, inner[1]
            x_node = follow_identity(self.by_name, inner[0])
        if x_node is None or x_node.op not in PRODUCERS or x_node.name in self.used:
            return None
        attrs = x_node.attr
        if "data_format" in attrs and attrs["data_format"].s not in (b"", b"NHWC"):
            return None
        if x_node.op == "MatMul" and "transpose_a" in attrs and attrs["transpose_a"].b:
            return None
        return x_node, bias_node, bias_value


def _weights(chain: _Chain, producer: Any) -> tuple[Any, np.ndarray, int] | None:
    weight = follow_identity(chain.by_name, producer.input[1])
    if weight is None or weight.op != "Const":
        return None
    w = tf.make_ndarray(weight.attr["value"].tensor)
    transpose_b = producer.op == "MatMul" and "transpose_b" in producer.attr and producer.attr["transpose_b"].b
    if producer.op == "DepthwiseConv2dNative":
        channels = w.shape[2] * w.shape[3]
    elif producer.op == "MatMul":
        channels = w.shape[0] if transpose_b else w.shape[1]
    else:
        channels = w.shape[-1]
    return weight, w, int(channels)


def _trailing_add(chain: _Chain, mul: Any, channels: int) -> tuple[Any, np.ndarray]:
    after = chain.users.get(mul.name, [])
    if len(after) == 1 and mul.name not in chain.protected and after[0].op in ("Add", "AddV2"):
        split = chain.split_const(after[0])
        if after[0].name not in chain.used and split is not None and node_of(split[0]) == mul.name:
            d = channel_vector(split[1], channels)
            if d is not None:
                return after[0], d
    return mul, np.zeros(channels)


def fold_scale_shift(graph_def: Any, protected: set[str]) -> StepResult:
    from edgeopt.converter.transforms.batch_norms import scaled_weights

    chain = _Chain(graph_def, protected)
    new_nodes: dict[str, Any] = {}
    extra: list[Any] = []
    for mul in graph_def.node:
        split = chain.split_const(mul) if mul.op == "Mul" and mul.name not in chain.used else None
        found = chain.producer_and_bias(split[0]) if split else None
        weights = _weights(chain, found[0]) if found else None
        if split is None or found is None or weights is None:
            continue
        producer, bias_node, bias_value = found
        weight, w, channels = weights
        scale = channel_vector(split[1], channels)
        bias = channel_vector(bias_value, channels) if bias_node is not None else np.zeros(channels)
        hops = [producer.name] + ([bias_node.name] if bias_node is not None else [])
        if scale is None or bias is None or not all(chain.private(h) for h in hops):
            continue
        last, shift = _trailing_add(chain, mul, channels)
        dtype = weight.attr["dtype"].type
        w_node = const_node(
            f"{producer.name}/scaled_weights", scaled_weights(producer, w, scale).astype(w.dtype), dtype
        )
        b_node = const_node(f"{last.name}/folded_bias", (bias * scale + shift).astype(w.dtype), dtype)
        new_producer = copy_node(producer)
        new_producer.input[1] = w_node.name
        bias_add = tf.compat.v1.NodeDef(name=last.name, op="BiasAdd")
        bias_add.input.extend([producer.name, b_node.name])
        bias_add.attr["T"].type = dtype
        bias_add.attr["data_format"].s = b"NHWC"
        new_nodes[producer.name], new_nodes[last.name] = new_producer, bias_add
        chain.used.update({producer.name, mul.name, last.name, *hops})
        extra.extend([w_node, b_node])
    count = len(extra) // 2
    if not count:
        return StepResult(graph_def, 0)
    folded = rebuild(graph_def, [new_nodes.get(n.name, n) for n in graph_def.node] + extra)
    identities = {n.name for n in graph_def.node if n.op == "Identity"}
    candidates = (chain.used - set(new_nodes)) | constant_subgraph(graph_def) | identities
    return StepResult(drop_orphans(folded, candidates, protected), count)
