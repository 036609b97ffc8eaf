"""GraphDef plumbing every transform shares: names, consumers, rebuilding, constant values.

The last section is the part of folding a per-channel scale into a
Conv2D/DepthwiseConv2dNative/MatMul that ``batch_norms`` and ``scale_shift``
share: finding a producer that feeds only the op being folded, its weights,
and the nodes that replace the two.

A transform never edits the GraphDef it is given: it builds a new one from
copies, so a transform that gives up half-way leaves the input intact.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf


class StepResult(NamedTuple):
    """What a transform returns: the new graph, how many nodes it changed, and anything worth reporting."""

    graph_def: Any
    changed: int
    details: dict[str, Any] = {}


#: ``transform(graph_def, protected)``: protected nodes (inputs and outputs) are never removed or renamed.
Transform = Callable[[Any, set[str]], StepResult]


def node_of(inp: str) -> str:
    return inp.lstrip("^").split(":")[0]


def port_of(inp: str) -> int:
    if inp.startswith("^"):
        return -1
    parts = inp.split(":")
    return int(parts[1]) if len(parts) > 1 else 0


def data_inputs(node: Any) -> list[str]:
    return [i for i in node.input if not i.startswith("^")]


def consumers(graph_def: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for n in graph_def.node:
        for i in n.input:
            out[node_of(i)].append(n)
    return out


def rebuild(graph_def: Any, nodes: Iterable[Any]) -> Any:
    new = tf.compat.v1.GraphDef()
    new.versions.CopyFrom(graph_def.versions)
    new.library.CopyFrom(graph_def.library)
    new.node.extend(nodes)
    return new


def copy_node(node: Any) -> Any:
    m = tf.compat.v1.NodeDef()
    m.CopyFrom(node)
    return m


def const_node(name: str, value: np.ndarray, dtype: Any) -> Any:
    node = tf.compat.v1.NodeDef(name=name, op="Const")
    node.attr["dtype"].type = dtype
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value, dtype=tf.dtypes.as_dtype(dtype)))
    return node


def drop_orphans(graph_def: Any, candidates: set[str], protected: set[str]) -> Any:
    """Remove candidate nodes nothing consumes any more, repeatedly; other nodes are never touched."""
    nodes = {n.name: n for n in graph_def.node}
    while True:
        consumed = {node_of(i) for n in nodes.values() for i in n.input}
        orphans = [k for k in nodes if k in candidates and k not in consumed and k not in protected]
        if not orphans:
            break
        for k in orphans:
            del nodes[k]
    return rebuild(graph_def, [n for n in graph_def.node if n.name in nodes])


def follow_identity(by_name: dict[str, Any], inp: str) -> Any:
    node = by_name.get(node_of(inp))
    while node is not None and node.op == "Identity" and node.input:
        node = by_name.get(node_of(node.input[0]))
    return node


#: Elementwise ops a constant operand may be computed with (the decomposed batch norm's Rsqrt/Mul/Sub/Add).
_NUMPY_OPS: dict[str, Callable[..., np.ndarray]] = {
    "Rsqrt": lambda a: 1.0 / np.sqrt(a),
    "Sqrt": np.sqrt,
    "Reciprocal": lambda a: 1.0 / a,
    "Mul": np.multiply,
    "Sub": np.subtract,
    "Add": np.add,
    "AddV2": np.add,
    "RealDiv": np.divide,
}


def const_value(by_name: dict[str, Any], inp: str, depth: int = 0) -> np.ndarray | None:
    """The value of a constant operand: a Const, or small numpy arithmetic on Consts; else None.

    This lets batch-norm folding see ``gamma * rsqrt(var + eps)`` as the
    constant it is without running a session (and so without running anything
    a graph might carry); fold_constants does the general case.
    """
    node = follow_identity(by_name, inp)
    if node is None or port_of(inp) > 0 or depth > 8:
        return None
    if node.op == "Const":
        return np.asarray(tf.make_ndarray(node.attr["value"].tensor))
    fn = _NUMPY_OPS.get(node.op)
    if fn is None or any(i.startswith("^") for i in node.input):
        return None
    args = [const_value(by_name, i, depth + 1) for i in node.input]
    if any(a is None or a.dtype.kind != "f" or a.size > 1 << 20 for a in args):
        return None
    with np.errstate(all="ignore"):
        result = np.asarray(fn(*args)).astype(args[0].dtype)  # type: ignore[union-attr]
    return result


def reachable(graph_def: Any, roots: set[str]) -> set[str]:
    by_name = {n.name: n for n in graph_def.node}
    seen: set[str] = set()
    stack = [r for r in roots if r in by_name]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(node_of(i) for i in by_name[name].input if node_of(i) in by_name)
    return seen


def constant_subgraph(graph_def: Any) -> set[str]:
    """Consts and the elementwise arithmetic computed only from them (weights, batch-norm statistics)."""
    const_only: set[str] = {n.name for n in graph_def.node if n.op == "Const"}
    changed = True
    while changed:
        changed = False
        for n in graph_def.node:
            if n.name in const_only or not n.input or n.op not in (*_NUMPY_OPS, "Identity"):
                continue
            if all(node_of(i) in const_only for i in n.input):
                const_only.add(n.name)
                changed = True
    return const_only


# --------------------------------------------------------------------------- folding a scale into a producer
# batch_norms and scale_shift both rewrite a Conv2D/DepthwiseConv2dNative/MatMul's weights for the one op
# it feeds; that is only sound when every node from the producer to that op feeds nothing else.

#: Ops whose weights a per-output-channel scale can be folded into.
PRODUCERS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")


def feeds_only_one(name: str, users: dict[str, list[Any]], protected: set[str]) -> bool:
    """One consumer and not an input or output: rewriting ``name`` for that consumer changes nothing else."""
    return len(users.get(name, [])) == 1 and name not in protected


def private_source(
    inp: str, by_name: dict[str, Any], users: dict[str, list[Any]], protected: set[str], through: tuple[str, ...]
) -> tuple[Any, list[Any]] | None:
    """The node behind ``inp`` past ``through`` ops (Identity, Reshape), and those hops in order from ``inp``.

    None when a hop also feeds another node or is an input or output: a fold into
    the node behind it would change what that other consumer sees.
    """
    hops = []
    node = by_name.get(node_of(inp))
    while node is not None and node.op in through and node.input:
        if not feeds_only_one(node.name, users, protected):
            return None
        hops.append(node)
        node = by_name.get(node_of(node.input[0]))
    return node, hops


def foldable_producer(node: Any, users: dict[str, list[Any]], protected: set[str]) -> bool:
    """A producer with channels last (NHWC, MatMul without transpose_a) that feeds only the op being folded."""
    if node is None or node.op not in PRODUCERS or not feeds_only_one(node.name, users, protected):
        return False
    attrs = node.attr
    if "data_format" in attrs and attrs["data_format"].s not in (b"", b"NHWC"):
        return False
    return not (node.op == "MatMul" and "transpose_a" in attrs and attrs["transpose_a"].b)


def _transpose_b(producer: Any) -> bool:
    return producer.op == "MatMul" and "transpose_b" in producer.attr and producer.attr["transpose_b"].b


def producer_weights(by_name: dict[str, Any], producer: Any) -> tuple[Any, np.ndarray, int] | None:
    """(the weights' Const node, their value, the output channel count), or None when they are not constant."""
    weight = follow_identity(by_name, producer.input[1])
    if weight is None or weight.op != "Const":
        return None
    w = tf.make_ndarray(weight.attr["value"].tensor)
    if producer.op == "DepthwiseConv2dNative":
        channels = w.shape[2] * w.shape[3]
    elif producer.op == "MatMul":
        channels = w.shape[0] if _transpose_b(producer) else w.shape[1]
    else:
        channels = w.shape[-1]
    return weight, w, int(channels)


def scaled_weights(producer: Any, w: np.ndarray, mult: np.ndarray) -> np.ndarray:
    """W with each output channel multiplied by ``mult``."""
    if producer.op == "DepthwiseConv2dNative":
        return w * mult.reshape(w.shape[2], w.shape[3])
    if _transpose_b(producer):
        return w * mult.reshape(-1, 1)
    return w * mult


def fold_into_producer(
    producer: Any,
    weights: tuple[Any, np.ndarray, int],
    mult: np.ndarray,
    bias: np.ndarray,
    *,
    name: str,
    weights_name: str,
    source: list[str],
) -> tuple[Any, Any, list[Any]]:
    """(the producer reading ``W * mult``, a BiasAdd named ``name`` adding ``bias`` to ``source``, its 2 Consts).

    The BiasAdd takes the folded op's name, so its consumers and an output of
    that name keep working; ``source`` is its data input (the producer, or the
    hops after it) followed by any control inputs the folded op had.
    """
    weight, w, _ = weights
    dtype = weight.attr["dtype"].type
    w_node = const_node(weights_name, scaled_weights(producer, w, mult).astype(w.dtype), dtype)
    b_node = const_node(f"{name}/folded_bias", bias.astype(w.dtype), dtype)
    new_producer = copy_node(producer)
    new_producer.input[1] = w_node.name
    bias_add = tf.compat.v1.NodeDef(name=name, op="BiasAdd")
    bias_add.input.extend([source[0], b_node.name, *source[1:]])
    bias_add.attr["T"].type = dtype
    bias_add.attr["data_format"].s = b"NHWC"
    return new_producer, bias_add, [w_node, b_node]
