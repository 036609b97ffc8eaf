"""GraphDef plumbing every transform shares: names, consumers, rebuilding, constant values.

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
