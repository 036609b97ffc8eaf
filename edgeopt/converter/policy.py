"""Graph policy: refuse every op that could reach beyond the model, before TensorFlow runs anything.

A model file is untrusted input.  Validation, constant folding and even
loading execute the graph, so an op that writes or reads files, talks to the
network, runs Python or starts processes would run with the converter Job's
reach.  This module inspects the parsed protos (the top-level graph, every
function of the library, and every function-valued attribute) and refuses:

- ops by name (:data:`DENIED_OPS`) and by family (:data:`DENIED_FAMILIES`:
  datasets, iterators, readers, summary writers, RPC, collectives, TPU,
  host send/receive, debugger taps);
- ops that are harmless only with some attribute values (``PrintV2`` to a
  file, ``DecodeProtoV2``/``EncodeProto`` loading descriptors from a file,
  ``Copy``/``CopyHost`` with debug URLs);
- ops TensorFlow does not know (custom op libraries are never loaded).

Checkpoint savers are the one exception.  A TF1 graph written after
``tf.train.Saver()`` holds ``save/SaveV2`` and ``save/RestoreV2``; those
nodes are cut out (:func:`strip_saver`) and the converter restores the
variables itself with the checkpoint reader, so no model-made restore op
ever runs.  A TF2 SavedModel's save/restore functions are exempt because
``tf.saved_model.load`` restores through its own saver and never calls them.

A cluster admin (never a tenant: the spec has no say) can allow more ops
with the operator setting :data:`ALLOWED_OPS_ENV`, which the operator passes
to the converter Job.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from edgeopt.errors import InputError
from edgeopt.limits import ALLOWED_OPS_ENV

_FILES = "reads or writes files"
_PYTHON = "runs Python code"
_NETWORK = "talks to other processes or hosts"
_DEVICE = "drives TPU/host infrastructure"

DENIED_OPS: dict[str, str] = {
    **dict.fromkeys(
        (
            "ReadFile",
            "WriteFile",
            "MatchingFiles",
            "Save",
            "SaveV2",
            "SaveSlices",
            "Restore",
            "RestoreV2",
            "RestoreSlice",
            "DTensorRestoreV2",
            "MergeV2Checkpoints",
            "ImmutableConst",
            "RecordInput",
            "InitializeTableFromTextFile",
            "InitializeTableFromTextFileV2",
            "GenerateVocabRemapping",
            "LoadAndRemapMatrix",
            "FileSystemSetConfiguration",
            "CalibrationStatisticsSaver",
            "DumpTensor",
            "ImportEvent",
            "DistributedSave",
        ),
        _FILES,
    ),
    **dict.fromkeys(("PyFunc", "PyFuncStateless", "EagerPyFunc"), _PYTHON),
    **dict.fromkeys(("RemoteCall", "WorkerHeartbeat", "TfLiteSubgraphExecute"), _NETWORK),
}

#: (pattern, why): whole families of ops that reach outside.
DENIED_FAMILIES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r".*Dataset(V\d+)?"), "reads datasets (files, databases, services)"),
    (re.compile(r".*Iterator.*|MakeIterator|DatasetToSingleElement|InitializeTableFromDataset"), "iterates datasets"),
    (re.compile(r"(TFRecord|TextLine|FixedLengthRecord|WholeFile|Identity|LMDB)Reader(V2)?|Reader[A-Z].*"), _FILES),
    (re.compile(r"(Create)?Summary(Db|File)?Writer|Write.*Summary|FlushSummaryWriter|CloseSummaryWriter"), _FILES),
    (re.compile(r"StatsAggregator.*|.*MemoryCache"), "keeps or writes dataset statistics and caches"),
    (re.compile(r"Rpc.*|DeleteRpcFutureResource"), _NETWORK),
    (re.compile(r"_?Collective.*|_Nccl.*|_?(Host)?(Send|Recv)"), _NETWORK),
    (re.compile(r".*TPU.*|.*Tpu.*|(In|Out)feed.*|_Xla.*|Xla(Send|Recv|HostCompute).*"), _DEVICE),
    (re.compile(r"Debug(Identity|NanCount|NumericSummary).*"), "sends tensors to debugger URLs (files, gRPC)"),
)

#: Checkpoint ops a saver subgraph may hold; cut out, never run.
SAVER_OPS = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints", "Save", "SaveSlices", "Restore", "RestoreSlice"})
_SAVER_SCOPE = re.compile(r"save(_\d+)?")
_PRINT_STREAMS = {"stderr", "stdout", "log(info)", "log(warning)", "log(error)"}


def denial(op: str, attrs: Any = None) -> str | None:
    """Why ``op`` (with NodeDef ``attrs``) must not run, or None when it may."""
    if op in DENIED_OPS:
        return DENIED_OPS[op]
    for pattern, why in DENIED_FAMILIES:
        if pattern.fullmatch(op):
            return why
    if attrs is None:
        return None
    if op == "PrintV2" and "output_stream" in attrs:
        stream = attrs["output_stream"].s.decode(errors="replace")
        if stream not in _PRINT_STREAMS:
            return f"prints to {stream!r} (a file), not to the log"
    if op in ("DecodeProtoV2", "EncodeProto") and "descriptor_source" in attrs:
        source = attrs["descriptor_source"].s.decode(errors="replace")
        if source not in ("", "local://"):
            return f"loads protobuf descriptors from {source!r}"
    if op in ("Copy", "CopyHost") and "debug_ops_spec" in attrs and attrs["debug_ops_spec"].list.s:
        return "sends tensors to debugger URLs"
    return None


@dataclass(frozen=True)
class Refusal:
    op: str
    node: str
    function: str | None  # None: the top-level graph
    why: str

    def message(self, where: str) -> str:
        inside = f"in function {self.function!r}" if self.function else "in the top-level graph"
        return (
            f"{where}: refused op {self.op} (node {self.node!r}, {inside}): it {self.why}, and a model may not "
            "reach beyond its own directory, so nothing was run or published. If this model is trusted, a "
            f"cluster admin can allow the op with the operator setting {ALLOWED_OPS_ENV}={self.op} "
            "(Helm value converter.allowedOps); a resource's spec cannot"
        )


def allowed_ops(env: dict[str, str] | None = None) -> frozenset[str]:
    """The admin's extra allowed ops, from the converter Job's environment."""
    raw = (env if env is not None else os.environ).get(ALLOWED_OPS_ENV, "")
    return frozenset(op.strip() for op in raw.split(",") if op.strip())


def _func_refs(attrs: Any) -> Iterator[str]:
    """Names in function-valued attributes (``f``, ``then_branch``, ``body``, ``branches`` ...)."""
    for value in attrs.values():
        if value.HasField("func"):
            yield value.func.name
        if value.HasField("list"):
            yield from (f.name for f in value.list.func)


def _nodes(graph_def: Any) -> Iterator[tuple[Any, str | None]]:
    yield from ((n, None) for n in graph_def.node)
    for fn in graph_def.library.function:
        yield from ((n, fn.signature.name) for n in fn.node_def)


def refusals(
    graph_def: Any,
    *,
    allowed: Iterable[str] = (),
    exempt_nodes: Iterable[str] = (),
    exempt_functions: Iterable[str] = (),
    known_op: Any = None,
) -> list[Refusal]:
    """Every node (top level and library) whose op, or a function-valued attribute's op, the policy refuses.

    ``exempt_*`` may hold checkpoint ops (:data:`SAVER_OPS`) and nothing else
    the policy refuses; ``known_op(name)`` says whether TensorFlow knows an op
    (unknown ops are refused, library functions aside).
    """
    allow = frozenset(allowed)
    nodes_ok, funcs_ok = set(exempt_nodes), set(exempt_functions)
    library = {fn.signature.name for fn in graph_def.library.function}
    found: list[Refusal] = []
    for node, function in _nodes(graph_def):
        exempt = (function in funcs_ok) if function else (node.name in nodes_ok)
        calls = [(node.op, node.attr)] + [(ref, None) for ref in _func_refs(node.attr) if ref not in library]
        for op, attrs in calls:
            if op in library or op in allow:
                continue
            why = denial(op, attrs)
            if why is None and known_op is not None and not known_op(op):
                why = "is not a TensorFlow 2.17 op (custom op libraries are never loaded)"
            if why is not None and not (exempt and op in SAVER_OPS):
                found.append(Refusal(op, node.name, function, why))
    return found


def check(graph_def: Any, where: str, **kwargs: Any) -> None:
    """Raise one InputError naming the first refused op (and how many more there are)."""
    kwargs.setdefault("allowed", allowed_ops())
    kwargs.setdefault("known_op", _tf_knows_op)
    found = refusals(graph_def, **kwargs)
    if found:
        more = f" ({len(found) - 1} more refused node(s) besides)" if len(found) > 1 else ""
        raise InputError(found[0].message(where) + more)


def _tf_knows_op(op: str) -> bool:
    from tensorflow.python.framework import op_def_registry

    return op_def_registry.get(op) is not None


# --------------------------------------------------------------------------- savers


def _node_of(inp: str) -> str:
    return inp.lstrip("^").split(":")[0]


def saver_nodes(graph_def: Any) -> set[str]:
    """TF1 ``tf.train.Saver`` subgraphs: every node under a ``save``/``save_N`` scope that holds a saver op."""
    scopes = {
        n.name.split("/", 1)[0]
        for n in graph_def.node
        if n.op in SAVER_OPS and "/" in n.name and _SAVER_SCOPE.fullmatch(n.name.split("/", 1)[0])
    }
    return {n.name for n in graph_def.node if n.name.split("/", 1)[0] in scopes and "/" in n.name}


def strip_saver(graph_def: Any, where: str) -> tuple[Any, int]:
    """The graph without its saver subgraph (the converter restores variables itself); and how many nodes went.

    A node outside the saver that consumes a saver node would be left
    dangling: that is a graph the converter refuses rather than guesses about.
    """
    drop = saver_nodes(graph_def)
    if not drop:
        return graph_def, 0
    for n in graph_def.node:
        if n.name in drop:
            continue
        used = [i for i in n.input if _node_of(i) in drop]
        if used:
            raise InputError(
                f"{where}: node {n.name!r} ({n.op}) uses the checkpoint saver's node {_node_of(used[0])!r}; "
                "the saver is cut out before conversion (the converter restores variables itself), so the "
                "model must not depend on it"
            )
    kept = type(graph_def)()
    kept.versions.CopyFrom(graph_def.versions)
    kept.library.CopyFrom(graph_def.library)
    kept.node.extend(n for n in graph_def.node if n.name not in drop)
    return kept, len(drop)


def saved_model_saver_exemptions(meta_graph: Any, where: str) -> tuple[set[str], set[str]]:
    """A SavedModel's save/restore nodes and the functions only they call.

    TF2 (object graph): ``tf.saved_model.load`` restores variables through its
    own saver and never runs these; a function the serving path calls as well
    is not exempt.  TF1: the loader runs the Saver's restore op with the
    variables path fed to its filename tensor, so every restore op there must
    read from that tensor and nothing else.
    """
    saver = meta_graph.saver_def
    graph_def = meta_graph.graph_def
    if not meta_graph.HasField("object_graph_def"):
        tf1_nodes = saver_nodes(graph_def)
        filename = _node_of(saver.filename_tensor_name)
        for n in graph_def.node:
            if (
                n.name in tf1_nodes
                and n.op in ("RestoreV2", "Restore", "RestoreSlice")
                and (not n.input or _node_of(n.input[0]) != filename)
            ):
                raise InputError(
                    f"{where}: restore op {n.name!r} does not read from the saver's filename tensor "
                    f"{saver.filename_tensor_name!r}; the SavedModel's saver is not the one TensorFlow writes, "
                    "so it is refused"
                )
        return tf1_nodes, set()
    if not (saver.save_tensor_name or saver.restore_op_name):
        return set(), set()
    by_name = {n.name: n for n in graph_def.node}
    roots = [_node_of(saver.save_tensor_name), _node_of(saver.restore_op_name)]
    nodes: set[str] = set()
    stack = [r for r in roots if r in by_name]
    while stack:
        name = stack.pop()
        if name not in nodes:
            nodes.add(name)
            stack.extend(_node_of(i) for i in by_name[name].input if _node_of(i) in by_name)
    calls = _call_graph(graph_def)
    from_saver = _closure(calls, {f for n in nodes for f in calls.get(("node", n), ())})
    others = {f for key, fs in calls.items() if key[0] == "node" and key[1] not in nodes for f in fs}
    from_rest = _closure(calls, others)
    return nodes, from_saver - from_rest


def _call_graph(graph_def: Any) -> dict[tuple[str, str], set[str]]:
    library = {fn.signature.name for fn in graph_def.library.function}
    calls: dict[tuple[str, str], set[str]] = {}
    for node, function in _nodes(graph_def):
        refs = {r for r in [node.op, *_func_refs(node.attr)] if r in library}
        if refs:
            key = ("func", function) if function else ("node", node.name)
            calls.setdefault(key, set()).update(refs)
    return calls


def _closure(calls: dict[tuple[str, str], set[str]], start: set[str]) -> set[str]:
    seen: set[str] = set()
    stack = list(start)
    while stack:
        f = stack.pop()
        if f not in seen:
            seen.add(f)
            stack.extend(calls.get(("func", f), ()))
    return seen
