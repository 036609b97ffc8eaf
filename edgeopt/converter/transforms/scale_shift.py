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

from edgeopt.converter.transforms.graph import (
    StepResult,
    const_value,
    constant_subgraph,
    consumers,
    drop_orphans,
    feeds_only_one,
    fold_into_producer,
    foldable_producer,
    node_of,
    port_of,
    private_source,
    producer_weights,
    rebuild,
)


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

    def source(self, inp: str) -> tuple[Any, list[Any]] | None:
        """The node behind ``inp`` past Identities that each feed only the next hop, and those Identities."""
        return private_source(inp, self.by_name, self.users, self.protected, through=("Identity",))

    def producer_and_bias(self, x_inp: str) -> tuple[Any, Any, np.ndarray | None, list[Any]] | None:
        """(producer, its bias node or None, the bias value, the private hops between them and the Mul)."""
        found = self.source(x_inp)
        if found is None:
            return None
        x_node, hops = found
        bias_node, bias_value = None, None
        if x_node is not None and x_node.op in ("BiasAdd", "Add", "AddV2"):
            inner = (
                self.split_const(x_node)
                if x_node.op != "BiasAdd"
                else (x_node.input[0], const_value(self.by_name, x_node.input[1]))
            )
            if inner is None or inner[1] is None or not feeds_only_one(x_node.name, self.users, self.protected):
                return None
            bias_node, bias_value = x_node, inner[1]
            found = self.source(inner[0])
            if found is None:
                return None
            x_node, more = found
            hops = [*hops, bias_node, *more]
        if x_node is None or x_node.name in self.used or not foldable_producer(x_node, self.users, self.protected):
            return None
        return x_node, bias_node, bias_value, hops


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
    chain = _Chain(graph_def, protected)
    new_nodes: dict[str, Any] = {}
    extra: list[Any] = []
    for mul in graph_def.node:
        split = chain.split_const(mul) if mul.op == "Mul" and mul.name not in chain.used else None
        found = chain.producer_and_bias(split[0]) if split else None
        weights = producer_weights(chain.by_name, found[0]) if found else None
        if split is None or found is None or weights is None:
            continue
        producer, bias_node, bias_value, hops = found
        channels = weights[2]
        scale = channel_vector(split[1], channels)
        bias = channel_vector(bias_value, channels) if bias_node is not None else np.zeros(channels)
        if scale is None or bias is None or any(h.name in chain.used for h in hops):
            continue
        last, shift = _trailing_add(chain, mul, channels)
        new_nodes[producer.name], new_nodes[last.name], consts = fold_into_producer(
            producer,
            weights,
            scale,
            bias * scale + shift,
            name=last.name,
            weights_name=f"{producer.name}/scaled_weights",
            source=[producer.name],
        )
        chain.used.update({producer.name, mul.name, last.name, *(h.name for h in hops)})
        extra.extend(consts)
    count = len(extra) // 2
    if not count:
        return StepResult(graph_def, 0)
    folded = rebuild(graph_def, [new_nodes.get(n.name, n) for n in graph_def.node] + extra)
    identities = {n.name for n in graph_def.node if n.op == "Identity"}
    candidates = (chain.used - set(new_nodes)) | constant_subgraph(graph_def) | identities
    return StepResult(drop_orphans(folded, candidates, protected), count)
