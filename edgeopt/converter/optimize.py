"""Stage 3 — optimize: the classic inference graph transforms, on a frozen GraphDef.

Written here rather than taken from ``optimize_for_inference_lib`` because
that library only folds a batch norm sitting *directly* on a Conv2D with
*directly* constant weights, knows nothing of FusedBatchNormV3 behind an
Identity, and renames nothing safely.  Every transform keeps the signature:
input placeholders and output nodes are never removed or renamed, and the
result is checked to import.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from edgeopt.converter.graph_model import FrozenModel, op_counts
from edgeopt.errors import ConversionError, SpecError
from edgeopt.spec import TRANSFORMS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
from tensorflow.python.framework import op_def_registry

#: Consts larger than this are not materialized by folding (it could blow the model up).
FOLD_LIMIT_BYTES = 64 * 1024 * 1024
CONTROL_FLOW_OPS = {
    "Switch",
    "RefSwitch",
    "Merge",
    "RefMerge",
    "Enter",
    "RefEnter",
    "Exit",
    "RefExit",
    "NextIteration",
    "RefNextIteration",
    "LoopCond",
    "ControlTrigger",
}
NEVER_FOLD = CONTROL_FLOW_OPS | {"Placeholder", "PlaceholderWithDefault", "Const", "NoOp"}
BATCH_NORM_OPS = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
FOLDABLE_PRODUCERS = ("Conv2D", "DepthwiseConv2dNative")


def node_of(inp: str) -> str:
    return inp.lstrip("^").split(":")[0]


def port_of(inp: str) -> int:
    if inp.startswith("^"):
        return -1
    parts = inp.split(":")
    return int(parts[1]) if len(parts) > 1 else 0


def _consumers(graph_def: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for n in graph_def.node:
        for i in n.input:
            out[node_of(i)].append(n)
    return out


def _rebuild(graph_def: Any, nodes: Iterable[Any]) -> Any:
    new = tf.compat.v1.GraphDef()
    new.versions.CopyFrom(graph_def.versions)
    new.library.CopyFrom(graph_def.library)
    new.node.extend(nodes)
    return new


def _const_node(name: str, value: np.ndarray, dtype: Any) -> Any:
    node = tf.compat.v1.NodeDef(name=name, op="Const")
    node.attr["dtype"].type = dtype
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value, dtype=tf.dtypes.as_dtype(dtype)))
    return node


# --------------------------------------------------------------------------- transforms


def _bypass(graph_def: Any, ops: tuple[str, ...], protected: set[str]) -> tuple[Any, int]:
    """Remove single-input pass-through nodes, wiring consumers to their input (control edges kept)."""
    by_name = {n.name: n for n in graph_def.node}
    drop: dict[str, tuple[str, list[str]]] = {}
    for n in graph_def.node:
        if n.op not in ops or n.name in protected:
            continue
        data = [i for i in n.input if not i.startswith("^")]
        if len(data) != 1:
            continue
        src = by_name.get(node_of(data[0]))
        if src is None or src.op in CONTROL_FLOW_OPS:
            continue  # cond/while plumbing: leave it alone
        drop[n.name] = (data[0], [i for i in n.input if i.startswith("^")])

    def resolve(inp: str) -> tuple[str, list[str]]:
        ctrl: list[str] = []
        seen = set()
        while node_of(inp) in drop and port_of(inp) in (0, -1) and node_of(inp) not in seen:
            seen.add(node_of(inp))
            target, extra = drop[node_of(inp)]
            ctrl.extend(extra)
            inp = "^" + node_of(target) if inp.startswith("^") else target
        return inp, ctrl

    kept = []
    for n in graph_def.node:
        if n.name in drop:
            continue
        m = tf.compat.v1.NodeDef()
        m.CopyFrom(n)
        data_inputs: list[str] = []
        ctrl_inputs: list[str] = []
        for inp in n.input:
            new, extra = resolve(inp)
            (ctrl_inputs if new.startswith("^") else data_inputs).append(new)
            ctrl_inputs.extend(extra)
        seen_ctrl = []
        for c in ctrl_inputs:
            if c not in seen_ctrl and c[1:] not in {node_of(d) for d in data_inputs}:
                seen_ctrl.append(c)
        del m.input[:]
        m.input.extend(data_inputs + seen_ctrl)
        kept.append(m)
    return _rebuild(graph_def, kept), len(drop)


def remove_identity(graph_def: Any, protected: set[str]) -> tuple[Any, int]:
    return _bypass(graph_def, ("Identity", "Snapshot", "StopGradient"), protected)


def remove_check_numerics(graph_def: Any, protected: set[str]) -> tuple[Any, int]:
    return _bypass(graph_def, ("CheckNumerics", "CheckNumericsV2"), protected)


def _is_stateful(op: str) -> bool:
    op_def = op_def_registry.get(op)
    return op_def is None or op_def.is_stateful


def fold_constants(graph_def: Any, protected: set[str]) -> tuple[Any, int]:
    """Evaluate every subgraph that depends only on constants and replace it by Consts."""
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    order = [n.name for n in graph_def.node]
    by_name = {n.name: n for n in graph_def.node}
    constant = {n.name for n in graph_def.node if n.op == "Const"}
    foldable: set[str] = set()
    changed = True
    while changed:  # graph order may not be topological yet
        changed = False
        for name in order:
            n = by_name[name]
            if name in foldable or n.op in NEVER_FOLD or not n.input:
                continue
            if _is_stateful(n.op) or any(node_of(i) not in constant | foldable for i in n.input):
                continue
            op = graph.get_operation_by_name(name)
            if any(t.dtype in (tf.resource, tf.variant) for t in op.outputs):
                continue
            foldable.add(name)
            changed = True
    consumers = _consumers(graph_def)
    wanted: dict[str, set[int]] = defaultdict(set)
    for name in foldable:
        for c in consumers.get(name, []):
            if c.name not in foldable:
                for i in c.input:
                    if node_of(i) == name and port_of(i) >= 0:
                        wanted[name].add(port_of(i))
        if name in protected:
            wanted[name].add(0)
    fetch = [(name, port) for name, ports in wanted.items() for port in sorted(ports)]
    if not fetch:
        return graph_def, 0
    with tf.compat.v1.Session(graph=graph) as sess:
        values = sess.run([f"{n}:{p}" for n, p in fetch])
    replacement: dict[tuple[str, int], Any] = {}
    for (name, port), value in zip(fetch, values, strict=False):
        value = np.asarray(value)
        if value.nbytes > FOLD_LIMIT_BYTES:
            continue
        dtype = graph.get_tensor_by_name(f"{name}:{port}").dtype.as_datatype_enum
        replacement[(name, port)] = _const_node(name if port == 0 else f"{name}/folded_{port}", value, dtype)
    nodes = []
    for n in graph_def.node:
        if (n.name, 0) in replacement:
            nodes.append(replacement[(n.name, 0)])
            continue
        m = tf.compat.v1.NodeDef()
        m.CopyFrom(n)
        for k, inp in enumerate(m.input):
            key = (node_of(inp), port_of(inp))
            if key[1] > 0 and key in replacement:
                m.input[k] = replacement[key].name
        nodes.append(m)
    nodes.extend(c for (_, port), c in replacement.items() if port > 0)
    folded = _rebuild(graph_def, nodes)
    # What was folded away has no consumers left: drop it (only folded nodes and their Consts).
    folded = _drop_orphans(folded, foldable | constant, protected)
    return folded, len({n for n, _ in replacement})


def _follow_identity(by_name: dict[str, Any], inp: str) -> Any:
    node = by_name.get(node_of(inp))
    while node is not None and node.op == "Identity" and node.input:
        node = by_name.get(node_of(node.input[0]))
    return node


def fold_batch_norms(graph_def: Any, protected: set[str]) -> tuple[Any, int]:
    """Fold batch norms into the weights before them: fused ones, then the Mul/Add form Keras 3 emits."""
    graph_def, fused = _fold_fused_batch_norms(graph_def, protected)
    graph_def, scaled = _fold_scale_shift(graph_def, protected)
    return graph_def, fused + scaled


def _fold_fused_batch_norms(graph_def: Any, protected: set[str]) -> tuple[Any, int]:
    """Fold inference-mode FusedBatchNorm(V3) into the preceding Conv2D/DepthwiseConv2dNative weights.

    y = gamma * (conv(x, W) - mean) / sqrt(var + eps) + beta
      = conv(x, W * m) + (beta - mean * m)   with m = gamma / sqrt(var + eps)
    The batch norm node becomes a BiasAdd of the same name, so its consumers
    (and an output of that name) keep working.  Identity nodes between conv
    and batch norm, and between a weight and its Const, are looked through.
    """
    by_name = {n.name: n for n in graph_def.node}
    consumers = _consumers(graph_def)
    new_nodes: dict[str, Any] = {}
    extra: list[Any] = []
    replaced: dict[str, Any] = {}
    count = 0
    for bn in graph_def.node:
        if bn.op not in BATCH_NORM_OPS:
            continue
        if "is_training" in bn.attr and bn.attr["is_training"].b:
            continue
        if "data_format" in bn.attr and bn.attr["data_format"].s not in (b"", b"NHWC"):
            continue
        if any(port_of(i) > 0 for c in consumers.get(bn.name, []) for i in c.input if node_of(i) == bn.name):
            continue  # batch statistics are used: not an inference batch norm
        conv = _follow_identity(by_name, bn.input[0])
        if conv is None or conv.op not in FOLDABLE_PRODUCERS or conv.name in new_nodes:
            continue
        # The conv (and identities in between) must feed only this batch norm.
        chain_ok = True
        hop = by_name[node_of(bn.input[0])]
        while True:
            if len(consumers.get(hop.name, [])) != 1 or hop.name in protected:
                chain_ok = False
                break
            if hop is conv:
                break
            hop = by_name[node_of(hop.input[0])]
        if not chain_ok:
            continue
        params = [_follow_identity(by_name, i) for i in bn.input[1:5]]
        weight = _follow_identity(by_name, conv.input[1])
        if weight is None or weight.op != "Const" or any(p is None or p.op != "Const" for p in params):
            continue
        scale, offset, mean, var = (tf.make_ndarray(p.attr["value"].tensor).astype(np.float64) for p in params)
        w = tf.make_ndarray(weight.attr["value"].tensor)
        eps = bn.attr["epsilon"].f if "epsilon" in bn.attr else 1e-4
        mult = scale / np.sqrt(var + eps)
        # Output channels: the last filter dim for Conv2D, (in, multiplier) for depthwise.
        new_w = w * (mult.reshape(w.shape[2], w.shape[3]) if conv.op == "DepthwiseConv2dNative" else mult)
        bias = offset - mean * mult
        w_node = _const_node(f"{conv.name}/folded_weights", new_w.astype(w.dtype), weight.attr["dtype"].type)
        b_node = _const_node(f"{bn.name}/folded_bias", bias.astype(w.dtype), weight.attr["dtype"].type)
        new_conv = tf.compat.v1.NodeDef()
        new_conv.CopyFrom(conv)
        new_conv.input[1] = w_node.name
        new_nodes[conv.name] = new_conv
        bias_add = tf.compat.v1.NodeDef(name=bn.name, op="BiasAdd")
        bias_add.input.extend([bn.input[0], b_node.name] + [i for i in bn.input if i.startswith("^")])
        bias_add.attr["T"].CopyFrom(bn.attr["T"])
        bias_add.attr["data_format"].s = b"NHWC"
        replaced[bn.name] = bias_add
        extra.extend([w_node, b_node])
        count += 1
    if not count:
        return graph_def, 0
    nodes = [replaced.get(n.name) or new_nodes.get(n.name) or n for n in graph_def.node]
    folded = _rebuild(graph_def, nodes + extra)
    # The old weights and batch-norm parameters (and Identity reads of them) may now be unused.
    consumed_before = {node_of(i) for n in graph_def.node for i in n.input}
    candidates = {n.name for n in folded.node if n.op in ("Const", "Identity") and n.name in consumed_before}
    return _drop_orphans(folded, candidates, protected), count


def _const_value(by_name: dict[str, Any], inp: str) -> np.ndarray | None:
    node = _follow_identity(by_name, inp)
    if node is None or node.op != "Const":
        return None
    return tf.make_ndarray(node.attr["value"].tensor)


def _channel_vector(value: np.ndarray | None, channels: int) -> np.ndarray | None:
    """A per-output-channel vector from a scalar, [C] or [1, ..., 1, C] constant; else None."""
    if value is None or value.dtype.kind != "f":
        return None
    if value.size == 1:
        return np.full(channels, float(value.reshape(())), dtype=np.float64)
    if value.shape[-1] == channels and value.size == channels:
        return value.reshape(channels).astype(np.float64)
    return None


def _fold_scale_shift(graph_def: Any, protected: set[str]) -> tuple[Any, int]:
    """Fold ``(P(x, W) [+ b]) * c [+ d]`` into ``P(x, W * c) + (b * c + d)`` for P = conv/depthwise/matmul.

    This is an inference batch norm after constant folding: Keras 3 and
    ``tf.nn.batch_normalization`` compute ``x * inv + (beta - mean * inv)``
    with Mul/AddV2 rather than FusedBatchNorm.  The last node of the chain
    becomes a BiasAdd of the same name.
    """
    by_name = {n.name: n for n in graph_def.node}
    consumers = _consumers(graph_def)
    used: set[str] = set()
    new_nodes: dict[str, Any] = {}
    extra: list[Any] = []
    count = 0

    def single_consumer(name: str) -> Any:
        cons = consumers.get(name, [])
        return cons[0] if len(cons) == 1 and name not in protected else None

    def split_const(node: Any) -> tuple[str, np.ndarray | None] | None:
        data = [i for i in node.input if not i.startswith("^")]
        if len(data) != 2 or any(i.startswith("^") for i in node.input):
            return None
        for k in (0, 1):
            value = _const_value(by_name, data[1 - k])
            if value is not None and _const_value(by_name, data[k]) is None and port_of(data[k]) == 0:
                return data[k], value
        return None

    for mul in graph_def.node:
        if mul.op != "Mul" or mul.name in used:
            continue
        split = split_const(mul)
        if split is None:
            continue
        x_inp, c_value = split
        x_node = _follow_identity(by_name, x_inp)
        bias_node, bias_value = None, None
        if x_node is not None and x_node.op in ("BiasAdd", "Add", "AddV2"):
            inner = (
                split_const(x_node)
                if x_node.op != "BiasAdd"
                else (x_node.input[0], _const_value(by_name, x_node.input[1]))
            )
            if inner is None or inner[1] is None:
                continue
            bias_node, bias_value = x_node, inner[1]
            x_node = _follow_identity(by_name, inner[0])
        if x_node is None or x_node.op not in (*FOLDABLE_PRODUCERS, "MatMul") or x_node.name in used:
            continue
        # (Reading a missing key of a protobuf map would insert it: look before reading.)
        attrs = x_node.attr
        if "data_format" in attrs and attrs["data_format"].s not in (b"", b"NHWC"):
            continue
        transpose_b = x_node.op == "MatMul" and "transpose_b" in attrs and attrs["transpose_b"].b
        if x_node.op == "MatMul" and "transpose_a" in attrs and attrs["transpose_a"].b:
            continue
        weight = _follow_identity(by_name, x_node.input[1])
        if weight is None or weight.op != "Const":
            continue
        w = tf.make_ndarray(weight.attr["value"].tensor)
        if x_node.op == "DepthwiseConv2dNative":
            channels = w.shape[2] * w.shape[3]
        elif x_node.op == "MatMul":
            channels = w.shape[0] if transpose_b else w.shape[1]
        else:
            channels = w.shape[-1]
        scale = _channel_vector(c_value, channels)
        bias = _channel_vector(bias_value, channels) if bias_node is not None else np.zeros(channels)
        if scale is None or bias is None:
            continue
        # Every hop from the producer to the Mul must feed only the next one.
        chain = [x_node.name] + ([bias_node.name] if bias_node is not None else [])
        if any(single_consumer(n) is None for n in chain):
            continue
        last, shift = mul, np.zeros(channels)
        after = single_consumer(mul.name)
        if after is not None and after.op in ("Add", "AddV2") and after.name not in used:
            add_split = split_const(after)
            if add_split is not None and node_of(add_split[0]) == mul.name:
                d = _channel_vector(add_split[1], channels)
                if d is not None:
                    last, shift = after, d
        if x_node.op == "DepthwiseConv2dNative":
            new_w = w * scale.reshape(w.shape[2], w.shape[3])
        elif transpose_b:
            new_w = w * scale.reshape(-1, 1)
        else:
            new_w = w * scale
        dtype = weight.attr["dtype"].type
        w_node = _const_node(f"{x_node.name}/scaled_weights", new_w.astype(w.dtype), dtype)
        b_node = _const_node(f"{last.name}/folded_bias", (bias * scale + shift).astype(w.dtype), dtype)
        producer = tf.compat.v1.NodeDef()
        producer.CopyFrom(x_node)
        producer.input[1] = w_node.name
        bias_add = tf.compat.v1.NodeDef(name=last.name, op="BiasAdd")
        bias_add.input.extend([x_node.name, b_node.name])
        bias_add.attr["T"].CopyFrom(x_node.attr["T"])
        bias_add.attr["data_format"].s = b"NHWC"
        new_nodes[x_node.name] = producer
        new_nodes[last.name] = bias_add
        used.update({x_node.name, mul.name, last.name} | ({bias_node.name} if bias_node is not None else set()))
        extra.extend([w_node, b_node])
        count += 1
    if not count:
        return graph_def, 0
    folded = _rebuild(graph_def, [new_nodes.get(n.name, n) for n in graph_def.node] + extra)
    return _drop_orphans(
        folded, used | {n.name for n in graph_def.node if n.op in ("Const", "Identity")}, protected
    ), count


def _drop_orphans(graph_def: Any, candidates: set[str], protected: set[str]) -> Any:
    """Remove candidate nodes nothing consumes any more, repeatedly; other nodes are never touched."""
    nodes = {n.name: n for n in graph_def.node}
    while True:
        consumed = {node_of(i) for n in nodes.values() for i in n.input}
        orphans = [k for k in nodes if k in candidates and k not in consumed and k not in protected]
        if not orphans:
            break
        for k in orphans:
            del nodes[k]
    return _rebuild(graph_def, [n for n in graph_def.node if n.name in nodes])


def _reachable(graph_def: Any, roots: set[str]) -> set[str]:
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


def strip_unused_nodes(graph_def: Any, protected: set[str]) -> tuple[Any, int]:
    """Keep only what the outputs need (plus the input placeholders, which make the signature)."""
    by_name = {n.name: n for n in graph_def.node}
    # NoOps that only wait on constants (frozen variable reads) guard nothing any more.
    dead: set[str] = set()
    changed = True
    while changed:
        changed = False
        for n in graph_def.node:
            if (
                n.op == "NoOp"
                and n.name not in dead
                and n.name not in protected
                and all(
                    by_name.get(node_of(i)) is None or by_name[node_of(i)].op == "Const" or node_of(i) in dead
                    for i in n.input
                )
            ):
                dead.add(n.name)
                changed = True
    nodes = []
    for n in graph_def.node:
        if n.name in dead:
            continue
        m = tf.compat.v1.NodeDef()
        m.CopyFrom(n)
        del m.input[:]
        m.input.extend(i for i in n.input if not (i.startswith("^") and node_of(i) in dead))
        nodes.append(m)
    graph_def = _rebuild(graph_def, nodes)
    reachable = _reachable(graph_def, protected)
    kept = [n for n in graph_def.node if n.name in reachable]
    return _rebuild(graph_def, kept), len(by_name) - len(kept)


def sort_by_execution_order(graph_def: Any, protected: set[str]) -> tuple[Any, int]:
    """Topological order (stable): every node after its inputs. Loops keep their original order."""
    by_name = {n.name: n for n in graph_def.node}
    index = {n.name: k for k, n in enumerate(graph_def.node)}
    pending = {
        n.name: {node_of(i) for i in n.input if node_of(i) in by_name and by_name[node_of(i)].op != "NextIteration"}
        for n in graph_def.node
    }
    users: dict[str, list[str]] = defaultdict(list)
    for name, deps in pending.items():
        for d in deps:
            users[d].append(name)
    import heapq

    ready = [(index[n], n) for n, deps in pending.items() if not deps]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for u in users[name]:
            pending[u].discard(name)
            if not pending[u]:
                heapq.heappush(ready, (index[u], u))
    placed = set(order)
    order.extend(n.name for n in graph_def.node if n.name not in placed)
    moved = sum(1 for k, name in enumerate(order) if index[name] != k)
    return _rebuild(graph_def, [by_name[n] for n in order]), moved


Transform = Callable[[Any, set[str]], tuple[Any, int]]
REGISTRY: dict[str, Transform] = {
    "remove_identity": remove_identity,
    "remove_check_numerics": remove_check_numerics,
    "fold_constants": fold_constants,
    "fold_batch_norms": fold_batch_norms,
    "strip_unused_nodes": strip_unused_nodes,
    "sort_by_execution_order": sort_by_execution_order,
}
assert set(REGISTRY) == set(TRANSFORMS), "spec.TRANSFORMS and the optimize registry disagree"


def optimize(frozen: FrozenModel, transforms: list[str]) -> tuple[FrozenModel, list[dict[str, Any]]]:
    """Apply the transforms in order; return the new model and what each one changed."""
    unknown = [t for t in transforms if t not in REGISTRY]
    if unknown:
        raise SpecError(f"spec.optimize.transforms: unknown transform {unknown[0]!r}; known: {', '.join(REGISTRY)}")
    protected = {e.node for e in frozen.inputs + frozen.outputs}
    graph_def = frozen.graph_def
    steps = []
    for name in transforms:
        before = len(graph_def.node)
        try:
            graph_def, changed = REGISTRY[name](graph_def, protected)
        except (tf.errors.OpError, ValueError, KeyError) as exc:
            raise ConversionError(f"transform {name} failed: {str(exc).splitlines()[0][:400]}") from exc
        steps.append({"transform": name, "changed": changed, "opsBefore": before, "opsAfter": len(graph_def.node)})
    names = {n.name for n in graph_def.node}
    lost = [e.node for e in frozen.inputs + frozen.outputs if e.node not in names]
    if lost:
        raise ConversionError(f"optimization lost signature node(s) {', '.join(lost)}; this is a bug in edgeopt")
    try:
        with tf.Graph().as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
    except (ValueError, tf.errors.OpError) as exc:
        raise ConversionError(f"the optimized graph does not import: {str(exc)[:400]}; this is a bug") from exc
    result = FrozenModel(graph_def, frozen.inputs, frozen.outputs, {"ops": op_counts(graph_def)})
    return result, steps
