"""``edgeopt inspect PATH``: what a model holds, so a spec can name its inputs, constants and outputs.

The seed guide's notes keep saying the output name "had to be dug out of
TensorBoard"; this prints it.  For graphs (.pb, .pbtxt, .meta, a checkpoint
directory): ops by type and count (the guide's check_optimization step),
placeholders with dtype and shape (candidate inputs and constants), sink
nodes and likely outputs with shapes (including the logits a training loss
consumes, which is not a sink).  For SavedModels and Keras files: the
signatures.  ``--manifest`` prints a starter OptimizedModel with those names
filled in, output names quoted: a bare ``y`` is a boolean to YAML 1.1 and so
to kubectl.  Only the standard library is imported at the top.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from edgeopt.errors import InputError

LOSS_OPS = ("SoftmaxCrossEntropyWithLogits", "SparseSoftmaxCrossEntropyWithLogits")
GRAPH_SUFFIXES = (".pb", ".pbtxt", ".meta")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "List a model's ops, placeholders, likely outputs and signatures (and draft a manifest)."
    parser.add_argument("path", help="a .pb/.pbtxt/.meta, a checkpoint directory, a SavedModel dir or a .keras/.h5")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--manifest", action="store_true", help="print a starter OptimizedModel YAML")


# --------------------------------------------------------------------------- graphs


def _shape(t: Any) -> list[int] | None:
    if t.shape.rank is None:
        return None
    return [-1 if d is None else int(d) for d in t.shape.as_list()]


def _logits_of_losses(graph_def: Any) -> list[str]:
    """The tensor each cross-entropy loss reads its logits from, outside the loss's own name scope."""
    by_name = {n.name: n for n in graph_def.node}
    found = []
    for n in graph_def.node:
        if n.op not in LOSS_OPS or not n.input:
            continue
        node = by_name.get(n.input[0].split(":")[0])
        while node is not None and node.name.startswith(n.name + "/") and node.input:
            node = by_name.get(node.input[0].lstrip("^").split(":")[0])
        if node is not None and node.name not in found:
            found.append(node.name)
    return found


def _placeholders_needed(graph_def: Any, outputs: list[str]) -> dict[str, list[str]]:
    """For each output, the placeholders it depends on (what a spec must feed or bind)."""
    from edgeopt.converter.transforms.graph import reachable

    kinds = {n.name: n.op for n in graph_def.node}
    return {
        out: sorted(n for n in reachable(graph_def, {out}) if kinds[n] in ("Placeholder", "PlaceholderWithDefault"))
        for out in outputs
    }


def describe_graph(graph_def: Any, *, fmt: str, graph_file: str, checkpoint: str | None) -> dict[str, Any]:
    import tensorflow as tf

    from edgeopt.converter.dtypes import triton_dtype
    from edgeopt.converter.load import PLACEHOLDER_OPS, sink_nodes

    graph = tf.Graph()
    ops: dict[str, Any] = {}
    try:
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
        ops = {op.name: op for op in graph.get_operations()}
    except (ValueError, tf.errors.OpError):
        pass  # shapes unknown; names and op counts still help

    def tensor(name: str) -> dict[str, Any]:
        op = ops.get(name)
        if op is None or not op.outputs:
            return {"name": name, "dtype": None, "shape": None}
        t = op.outputs[0]
        try:
            dtype = triton_dtype(t.dtype.name)
        except Exception:  # a dtype Triton has no name for (resource, variant)
            dtype = t.dtype.name
        return {"name": name, "dtype": dtype, "shape": _shape(t), "op": op.type}

    # The Saver's own filename placeholders are bookkeeping, not model inputs.
    holders = [n for n in graph_def.node if n.op in PLACEHOLDER_OPS and not n.name.startswith("save/")]
    placeholders = [{**tensor(n.name), "op": n.op} for n in holders]
    sinks = sink_nodes(graph_def, limit=50)
    likely = list(dict.fromkeys(_logits_of_losses(graph_def) + sinks))
    needs = _placeholders_needed(graph_def, likely)
    return {
        "path": graph_file,
        "format": fmt,
        "checkpoint": checkpoint,
        "ops": {"total": len(graph_def.node), "byType": dict(Counter(n.op for n in graph_def.node).most_common())},
        "placeholders": placeholders,
        "sinks": [tensor(s) for s in sinks],
        "likelyOutputs": [{**tensor(s), "needs": needs[s]} for s in likely],
        "variables": sum(1 for n in graph_def.node if n.op in ("VarHandleOp", "VariableV2", "Variable")),
    }


def _checkpoint_in(directory: Path) -> tuple[Path, str | None]:
    """(graph file, checkpoint prefix) of a checkpoint directory."""
    prefixes = sorted(p.name[: -len(".index")] for p in directory.glob("*.index"))
    graphs = sorted(p for p in directory.iterdir() if p.suffix in GRAPH_SUFFIXES)
    metas = [g for g in graphs if g.suffix == ".meta"]
    pick = next((g for g in graphs if g.suffix != ".meta"), None) or (metas[0] if metas else None)
    if pick is None:
        raise InputError(
            f"{directory}: no .pb, .pbtxt or .meta graph in the directory (it holds checkpoint data only?)"
        )
    return pick, prefixes[-1] if prefixes else None


def _inspect_graph_file(path: Path, checkpoint: str | None) -> dict[str, Any]:
    from edgeopt.converter.load import parse_graph_def, parse_meta_graph

    graph_def = parse_meta_graph(path).graph_def if path.suffix == ".meta" else parse_graph_def(path)
    has_vars = any(n.op in ("VarHandleOp", "VariableV2", "Variable") for n in graph_def.node)
    if has_vars and checkpoint is None:
        prefixes = sorted(p.name[: -len(".index")] for p in path.parent.glob("*.index"))
        checkpoint = prefixes[-1] if len(prefixes) == 1 else None
    fmt = "Checkpoint" if has_vars or checkpoint else "FrozenGraph"
    return describe_graph(graph_def, fmt=fmt, graph_file=str(path), checkpoint=checkpoint)


# --------------------------------------------------------------------------- signatures


def _signature(func: Any) -> dict[str, Any]:
    import tensorflow as tf

    from edgeopt.converter.dtypes import triton_dtype

    ins = func.structured_input_signature[1]
    outs = func.structured_outputs
    if not isinstance(outs, dict):
        outs = {f"output_{i}": t for i, t in enumerate(tf.nest.flatten(outs))}

    def row(k: str, s: Any) -> dict[str, Any]:
        return {"name": k, "dtype": triton_dtype(s.dtype.name), "shape": _shape(s)}

    return {
        "inputs": [row(k, s) for k, s in sorted(ins.items())],
        "outputs": [row(k, s) for k, s in sorted(outs.items())],
    }


def _inspect_saved_model(path: Path) -> dict[str, Any]:
    import tensorflow as tf

    try:
        obj = tf.saved_model.load(str(path))
    except (tf.errors.OpError, ValueError, OSError) as exc:
        raise InputError(f"SavedModel {path} cannot be loaded: {str(exc).splitlines()[0][:300]}") from exc
    sigs = {k: _signature(f) for k, f in obj.signatures.items()}
    return {"path": str(path), "format": "SavedModel", "signatures": sigs}


def _inspect_keras(path: Path) -> dict[str, Any]:
    import keras

    try:
        model = keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # Keras raises many types for a bad file
        raise InputError(f"Keras model {path} cannot be loaded: {str(exc).splitlines()[0][:300]}") from exc

    def rows(tensors: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "shape": [-1 if d is None else int(d) for d in t.shape]} for t in tensors]

    return {"path": str(path), "format": "Keras", "inputs": rows(model.inputs), "outputs": rows(model.outputs)}


def inspect_path(path: Path) -> dict[str, Any]:
    """Describe whatever model ``path`` is; InputError when it is none of the formats."""
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            return _inspect_saved_model(path)
        graph, prefix = _checkpoint_in(path)
        return _inspect_graph_file(graph, prefix)
    if path.suffix in (".keras", ".h5"):
        return _inspect_keras(path)
    if path.suffix in GRAPH_SUFFIXES or path.suffix == ".txt":
        prefix = None
        if path.suffix == ".meta" and Path(str(path)[: -len(".meta")] + ".index").exists():
            prefix = path.name[: -len(".meta")]
        return _inspect_graph_file(path, prefix)
    raise InputError(
        f"{path}: not a model edgeopt knows; give a .pb/.pbtxt/.meta, a checkpoint directory, "
        "a SavedModel directory or a .keras/.h5 file"
    )


# --------------------------------------------------------------------------- output


def starter_manifest(info: dict[str, Any]) -> dict[str, Any]:
    from edgeopt.converter.manifest import starter

    return starter(info)


def _table(info: dict[str, Any]) -> str:
    lines = [f"{info['path']}  ({info['format']})"]

    def tensors(title: str, rows: list[dict[str, Any]]) -> None:
        lines.append(f"\n{title}:")
        if not rows:
            lines.append("  (none)")
        width = max((len(r["name"]) for r in rows), default=0)
        for r in rows:
            shape = "unknown" if r.get("shape") is None else str(r["shape"])
            lines.append(f"  {r['name']:<{width}}  {r.get('dtype') or '':<6} {shape}  {r.get('op', '')}".rstrip())

    if "ops" in info:
        lines.append(f"\nops: {info['ops']['total']}")
        for op, n in info["ops"]["byType"].items():
            lines.append(f"  {op:<32} {n:>6}")
        tensors("placeholders (inputs or constants)", info["placeholders"])
        tensors("likely outputs", info["likelyOutputs"])
        tensors("sink nodes", info["sinks"])
    for key, sig in info.get("signatures", {}).items():
        tensors(f"signature {key} inputs", sig["inputs"])
        tensors(f"signature {key} outputs", sig["outputs"])
    if info["format"] == "Keras":
        tensors("inputs", info["inputs"])
        tensors("outputs", info["outputs"])
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    info = inspect_path(Path(args.path).resolve())
    if args.manifest:
        from edgeopt.converter.manifest import render

        sys.stdout.write(render(starter_manifest(info)))
    elif args.json:
        json.dump(info, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(_table(info))
    return 0
