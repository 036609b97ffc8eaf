"""``fold_constants``: evaluate every subgraph that depends only on constants, replace it by Consts.

Folding *runs* part of an untrusted graph, so what it may run is narrow:
never a stateful op (I/O, random, variables, queues: anything TensorFlow
marks stateful or does not know), never an op that calls a function (its
body could be stateful), never control flow; and every value is sized from
its static shape *before* anything is evaluated, so a graph cannot make the
converter materialize a huge tensor (``Fill`` of [1e6, 1e6], say).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import op_def_registry

from edgeopt.converter import policy
from edgeopt.converter.transforms.graph import (
    StepResult,
    const_node,
    consumers,
    copy_node,
    drop_orphans,
    node_of,
    port_of,
    rebuild,
)
from edgeopt.converter.transforms.remove_nodes import CONTROL_FLOW_OPS
from edgeopt.limits import Limits

#: Dequantize too: folding it would undo quantize_weights when fold_constants runs after it.
NEVER_FOLD = CONTROL_FLOW_OPS | {"Placeholder", "PlaceholderWithDefault", "Const", "NoOp", "Dequantize"}


def is_stateful(op: str) -> bool:
    """Stateful per TensorFlow's registry; an op the registry does not know counts as stateful."""
    op_def = op_def_registry.get(op)
    return op_def is None or op_def.is_stateful


def _calls_function(node: Any) -> bool:
    return any(v.HasField("func") or len(v.list.func) > 0 for v in node.attr.values())


def static_bytes(tensor: Any) -> int | None:
    """Bytes of a tensor from its static shape, or None when the shape (or a string's size) is unknown."""
    if not tensor.shape.is_fully_defined() or tensor.dtype in (tf.string, tf.resource, tf.variant):
        return None
    return int(np.prod(tensor.shape.as_list(), dtype=np.int64)) * tensor.dtype.size


def _safe_to_evaluate(node: Any, op: Any, limit: int) -> bool:
    if node.op in NEVER_FOLD or is_stateful(node.op) or _calls_function(node):
        return False
    if policy.denial(node.op, node.attr) is not None:  # even an op an admin allowed is never run at build time
        return False
    sizes = [static_bytes(t) for t in op.outputs]
    return bool(op.outputs) and all(s is not None and s <= limit for s in sizes)


def foldable_nodes(graph_def: Any, graph: Any, limit: int | None = None) -> set[str]:
    """Nodes whose every input is a Const or foldable, and that are safe to evaluate.

    ``limit``: the largest value folding may materialize, by default the admin's
    cap (``EDGEOPT_LIMIT_FOLD_BYTES``), checked from static shapes before anything runs.
    """
    limit = Limits.from_env().fold_bytes if limit is None else limit
    by_name = {n.name: n for n in graph_def.node}
    constant = {n.name for n in graph_def.node if n.op == "Const"}
    foldable: set[str] = set()
    changed = True
    while changed:  # graph order may not be topological yet
        changed = False
        for name, n in by_name.items():
            if name in foldable or not n.input or any(node_of(i) not in constant | foldable for i in n.input):
                continue
            if _safe_to_evaluate(n, graph.get_operation_by_name(name), limit):
                foldable.add(name)
                changed = True
    return foldable


def _fetches(graph_def: Any, foldable: set[str], protected: set[str]) -> list[tuple[str, int]]:
    """The folded tensors something outside the folded set still reads."""
    users = consumers(graph_def)
    wanted: dict[str, set[int]] = defaultdict(set)
    for name in foldable:
        for c in users.get(name, []):
            if c.name not in foldable:
                for i in c.input:
                    if node_of(i) == name and port_of(i) >= 0:
                        wanted[name].add(port_of(i))
        if name in protected:
            wanted[name].add(0)
    return [(name, port) for name, ports in wanted.items() for port in sorted(ports)]


def fold_constants(graph_def: Any, protected: set[str]) -> StepResult:
    """Fold constant subgraphs, then let Selects on a now-constant condition take their branch."""
    from edgeopt.converter.transforms.select import take_constant_selects

    folded = _fold(graph_def, protected)
    taken = take_constant_selects(folded.graph_def, protected)
    if not taken.changed:
        return folded
    # The branch not taken (and what only it needed) is stripped by strip_unused_nodes.
    return StepResult(taken.graph_def, folded.changed + taken.changed, {"selectsTaken": taken.changed})


def _fold(graph_def: Any, protected: set[str]) -> StepResult:
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    foldable = foldable_nodes(graph_def, graph)
    fetch = _fetches(graph_def, foldable, protected)
    if not fetch:
        return StepResult(graph_def, 0)
    with tf.compat.v1.Session(graph=graph) as sess:
        values = sess.run([f"{n}:{p}" for n, p in fetch])
    replacement: dict[tuple[str, int], Any] = {}
    for (name, port), value in zip(fetch, values, strict=True):
        dtype = graph.get_tensor_by_name(f"{name}:{port}").dtype.as_datatype_enum
        replacement[(name, port)] = const_node(name if port == 0 else f"{name}/folded_{port}", np.asarray(value), dtype)
    nodes = []
    for n in graph_def.node:
        if (n.name, 0) in replacement:
            nodes.append(replacement[(n.name, 0)])
            continue
        m = copy_node(n)
        for k, inp in enumerate(m.input):
            key = (node_of(inp), port_of(inp))
            if key[1] > 0 and key in replacement:
                m.input[k] = replacement[key].name
        nodes.append(m)
    nodes.extend(c for (_, port), c in replacement.items() if port > 0)
    constant = {n.name for n in graph_def.node if n.op == "Const"}
    # What was folded away has no consumers left: drop it (only folded nodes and their Consts).
    folded = drop_orphans(rebuild(graph_def, nodes), foldable | constant, protected)
    return StepResult(folded, len({n for n, _ in replacement}))
