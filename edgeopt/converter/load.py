"""Stage 1 — load: open the source model and check it against the spec.

Every way a source can be wrong is caught here, before any work is done,
and reported as one paragraph that names the file, the node or the field:
a missing path, a file that is not a GraphDef, a checkpoint that does not
restore, an output node that is not in the graph (with the closest names
and the graph's sink nodes), an input that is not a placeholder, a dtype
or shape that does not fit.

The loaded model also serves as the *reference* for validation: graph
formats keep a session with the restored variables, SavedModel/Keras keep
the original signature function, so "original vs converted" really
compares against the original.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.converter import policy
from edgeopt.converter.dtypes import spec_dtype_matches, triton_dtype
from edgeopt.converter.graph_model import Endpoint, ModelFn, sanitize_key, tensor_name
from edgeopt.converter.placeholders import bind_placeholders, check_fed
from edgeopt.errors import InputError
from edgeopt.limits import Limits
from edgeopt.spec import OptimizedModel, Source, TensorSpec, contained, resolve_uri

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
from google.protobuf import message as pb_message
from google.protobuf import text_format

VARIABLE_OPS = ("VarHandleOp", "VariableV2", "Variable")
PLACEHOLDER_OPS = ("Placeholder", "PlaceholderWithDefault")
#: Ops that are never a model's output: bookkeeping, savers, initializers.
NOT_OUTPUT_OPS = {
    "NoOp",
    "Const",
    "Assign",
    "AssignVariableOp",
    "SaveV2",
    "RestoreV2",
    "MergeV2Checkpoints",
    "VarIsInitializedOp",
    "IsVariableInitialized",
    "ReadVariableOp",
    "VarHandleOp",
    "VariableV2",
    "StringJoin",
    "ShardedFilename",
    "Placeholder",
}


@dataclass
class LoadedModel:
    format: str
    graph_def: Any  # the model as loaded, for "ops as loaded"
    inputs: list[Endpoint]
    outputs: list[Endpoint]
    reference: ModelFn
    session: Any = None  # graph formats: the session holding the restored graph
    function: Any = None  # SavedModel/Keras: the signature ConcreteFunction
    keep_alive: list[Any] = field(default_factory=list)
    constants: list[dict[str, Any]] = field(default_factory=list)  # placeholders bound to values

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


# --------------------------------------------------------------------------- helpers


def _source_dir(src: Source) -> Path:
    path = resolve_uri(src.uri)
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        hint = (
            f"; {parent} exists and holds: {', '.join(sorted(os.listdir(parent))[:10]) or 'nothing'}"
            if (parent and parent.is_dir() and parent != Path("/"))
            else ""
        )
        raise InputError(f"spec.source.uri {src.uri!r}: {path} does not exist{hint}")
    return path


def _file_in(base: Path, name: str, field_path: str) -> Path:
    """``name`` inside the source directory, symlinks resolved; it may not lead out of it."""
    root = base if base.is_dir() else base.parent
    path = root / name
    if not path.exists():
        listing = ", ".join(sorted(os.listdir(path.parent))[:15]) if path.parent.is_dir() else "nothing"
        raise InputError(f"{field_path} {name!r}: {path} does not exist (the directory holds: {listing})")
    return contained(root, path, f"{field_path} {name!r}")


def _checkpoint_files(prefix: Path, root: Path, limits: Limits) -> None:
    """Every file of the checkpoint stays inside the source directory, and together they fit the cap."""
    files = [p for p in prefix.parent.glob(prefix.name + "*") if p.name.startswith(prefix.name + ".")]
    total = sum(contained(root, p, f"checkpoint file {p.name}").stat().st_size for p in files)
    limits.refuse_size("checkpoint_bytes", total, f"checkpoint {prefix}")


def _directory_files(path: Path, limits: Limits, what: str) -> None:
    """A model directory's files all live inside it (no symlink out) and together fit the cap."""
    total = 0
    for p in path.rglob("*"):
        if p.is_symlink() or p.is_file():
            total += contained(path, p, f"{what} file {p.relative_to(path)}").stat().st_size
    limits.refuse_size("checkpoint_bytes", total, what)


def _read_capped(path: Path, limits: Limits) -> bytes:
    limits.refuse_size("graph_bytes", path.stat().st_size, f"graph file {path}")
    return path.read_bytes()


def parse_graph_def(path: Path) -> Any:
    """Read a GraphDef, binary or text; a file that is neither is an InputError."""
    data = _read_capped(path, Limits.from_env())
    graph_def = tf.compat.v1.GraphDef()
    errors = []
    if path.suffix not in (".pbtxt", ".txt"):
        try:
            graph_def.ParseFromString(data)
            if len(graph_def.node) > 0:
                return graph_def
            errors.append("binary: no nodes")
        except (pb_message.DecodeError, RuntimeWarning, ValueError) as exc:
            errors.append(f"binary: {exc}")
    try:
        graph_def = tf.compat.v1.GraphDef()
        text_format.Parse(data.decode("utf-8"), graph_def)
        if len(graph_def.node) > 0:
            return graph_def
        errors.append("text: no nodes")
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        errors.append(f"text: {str(exc)[:200]}")
    raise InputError(
        f"{path} is not a readable TensorFlow GraphDef (tried binary and text protobuf: {'; '.join(errors)}); "
        "the file may be corrupt or truncated"
    )


def parse_meta_graph(path: Path) -> Any:
    meta = tf.compat.v1.MetaGraphDef()
    try:
        meta.ParseFromString(_read_capped(path, Limits.from_env()))
    except (pb_message.DecodeError, RuntimeWarning, ValueError) as exc:
        raise InputError(f"{path} is not a readable MetaGraphDef ({exc}); the file may be corrupt") from exc
    if not meta.graph_def.node:
        raise InputError(f"{path} holds a MetaGraphDef with an empty graph; the file may be corrupt")
    return meta


def sink_nodes(graph_def: Any, limit: int = 10) -> list[str]:
    """Nodes nothing else consumes, minus savers and initializers: the likely outputs."""
    consumed = set()
    for n in graph_def.node:
        for i in n.input:
            consumed.add(i.lstrip("^").split(":")[0])
    sinks = [
        n.name
        for n in graph_def.node
        if n.name not in consumed
        and n.op not in NOT_OUTPUT_OPS
        and not n.name.startswith(("save/", "init", "report_uninitialized"))
    ]
    return sinks[:limit]


def _closest(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    return ", ".join(close) if close else "none"


def merge_shape(declared: list[int], actual: list[int] | None, where: str) -> list[int]:
    """The declared shape where the model leaves a dimension open; an error where they disagree."""
    if actual is None:
        return list(declared)
    if len(declared) != len(actual):
        raise InputError(f"{where}: declared shape {declared} has rank {len(declared)} but the model's is {actual}")
    merged = []
    for i, (d, a) in enumerate(zip(declared, actual, strict=False)):
        if a >= 0 and d >= 0 and a != d:
            raise InputError(f"{where}: declared shape {declared} does not fit the model's {actual} (dimension {i})")
        merged.append(a if a >= 0 else d)
    return merged


def _check_declared(spec: TensorSpec, ep: Endpoint, where: str) -> Endpoint:
    # Nothing declared: keep the model's shape.
    shape = ep.shape if spec.shape == [] and ep.shape else merge_shape(spec.shape, ep.shape, where)
    if not spec_dtype_matches(spec.dtype, ep.dtype):
        raise InputError(f"{where}: declared dtype {spec.dtype} does not fit the model's {ep.dtype}")
    return Endpoint(ep.key, ep.tensor, ep.dtype, shape)


def _tensor_shape(t: Any) -> list[int] | None:
    if t.shape.rank is None:
        return None
    return [-1 if d is None else int(d) for d in t.shape.as_list()]


def _graph_endpoints(graph: Any, graph_def: Any, src: Source) -> tuple[list[Endpoint], list[Endpoint]]:
    """Map spec.source.inputs/outputs onto the imported graph, with errors naming candidates."""
    ops = {op.name: op for op in graph.get_operations()}
    names = list(ops)
    placeholders = [o.name for o in graph.get_operations() if o.type in PLACEHOLDER_OPS]
    inputs = []
    for i, spec in enumerate(src.inputs):
        where = f"spec.source.inputs[{i}] {spec.name!r}"
        tname = tensor_name(spec.name)
        node = tname.rsplit(":", 1)[0]
        op = ops.get(node)
        if op is None:
            raise InputError(
                f"{where}: no node named {node!r} in the graph; closest names: {_closest(node, names)}; "
                f"the graph's placeholders are: {', '.join(placeholders) or 'none'}"
            )
        if op.type not in PLACEHOLDER_OPS:
            raise InputError(
                f"{where}: node {node!r} is a {op.type}, not a Placeholder, so it cannot be an input; "
                f"the graph's placeholders are: {', '.join(placeholders) or 'none'}"
            )
        t = graph.get_tensor_by_name(tname)
        ep = Endpoint(sanitize_key(spec.name), tname, triton_dtype(t.dtype.name), _tensor_shape(t))
        inputs.append(_check_declared(spec, ep, where))
    outputs = []
    for i, name in enumerate(src.outputs):
        tname = tensor_name(name)
        node, idx = tname.rsplit(":", 1)
        op = ops.get(node)
        if op is None:
            raise InputError(
                f"spec.source.outputs[{i}]: output node {node!r} is not in the graph; closest names: "
                f"{_closest(node, names)}; the graph's sink nodes (likely outputs) are: "
                f"{', '.join(sink_nodes(graph_def)) or 'none'}"
            )
        if int(idx) >= len(op.outputs):
            raise InputError(f"spec.source.outputs[{i}]: node {node!r} ({op.type}) has only {len(op.outputs)} outputs")
        t = op.outputs[int(idx)]
        outputs.append(Endpoint(sanitize_key(name), tname, triton_dtype(t.dtype.name), _tensor_shape(t)))
    keys = [e.key for e in inputs + outputs]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise InputError(f"spec.source: input/output names collide after sanitizing: {', '.join(sorted(dup))}")
    return inputs, outputs


def _session_reference(sess: Any, inputs: list[Endpoint], outputs: list[Endpoint]) -> ModelFn:
    fetches = [sess.graph.get_tensor_by_name(o.tensor) for o in outputs]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = sess.run(fetches, {i.tensor: feeds[i.key] for i in inputs})
        return {o.key: np.asarray(v) for o, v in zip(outputs, values, strict=False)}

    return run


def _restore_into(sess: Any, graph_def: Any, prefix: Path) -> None:
    """Assign every variable of an imported GraphDef from a TF1 checkpoint, resource variables included.

    This is what ``Saver.restore`` would do, without needing the Saver's
    ops in the graph (a plain ``write_graph`` GraphDef may lack them).
    """
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except (tf.errors.OpError, ValueError) as exc:
        raise InputError(f"checkpoint {prefix} cannot be read ({str(exc).splitlines()[0]}); is it corrupt?") from exc
    available = reader.get_variable_to_shape_map()
    graph = sess.graph
    assigns = []
    missing = []
    with graph.as_default():
        for node in graph_def.node:
            if node.op not in VARIABLE_OPS:
                continue
            shared = node.attr["shared_name"].s.decode() if "shared_name" in node.attr else ""
            key = node.name if node.name in available else shared if shared in available else None
            if key is None:
                missing.append(node.name)
                continue
            value = tf.constant(reader.get_tensor(key))
            handle = graph.get_tensor_by_name(node.name + ":0")
            if node.op == "VarHandleOp":
                assigns.append(tf.raw_ops.AssignVariableOp(resource=handle, value=value))
            else:
                assigns.append(tf.compat.v1.assign(handle, value))
    if missing:
        raise InputError(
            f"checkpoint {prefix} has no value for variable(s) {', '.join(missing[:10])}; it holds: "
            f"{', '.join(sorted(available)[:10]) or 'nothing'} — graph and checkpoint do not belong together"
        )
    try:
        sess.run(assigns)
    except tf.errors.OpError as exc:
        raise InputError(f"checkpoint {prefix} does not fit the graph: {str(exc).splitlines()[0]}") from exc


# --------------------------------------------------------------------------- formats


def _checked_graph_def(graph_path: Path) -> Any:
    """The stored GraphDef (a .meta's too) without its saver, after the op policy passed it."""
    graph_def = parse_meta_graph(graph_path).graph_def if graph_path.suffix == ".meta" else parse_graph_def(graph_path)
    graph_def, _ = policy.strip_saver(graph_def, str(graph_path))
    policy.check(graph_def, str(graph_path))
    for node in graph_def.node:
        node.device = ""
    return graph_def


def _load_graph_format(model: OptimizedModel) -> LoadedModel:
    src = model.spec.source
    base = _source_dir(src)
    root = base if base.is_dir() else base.parent
    assert src.graph is not None
    graph_path = _file_in(base, src.graph, "spec.source.graph")
    prefix: Path | None = None
    if src.format == "Checkpoint":
        assert src.checkpoint is not None
        prefix = root / src.checkpoint
        if not Path(str(prefix) + ".index").exists() and not prefix.exists():
            listing = ", ".join(sorted(os.listdir(prefix.parent))[:15]) if prefix.parent.is_dir() else "nothing"
            raise InputError(
                f"spec.source.checkpoint {src.checkpoint!r}: no checkpoint at {prefix} (expected {prefix}.index "
                f"and data files; the directory holds: {listing})"
            )
        _checkpoint_files(prefix, root, Limits.from_env())
    # Policy first: nothing of the model is imported, let alone run, before it passes.
    graph_def = _checked_graph_def(graph_path)
    input_nodes = [tensor_name(t.name).rsplit(":", 1)[0] for t in src.inputs]
    bound = bind_placeholders(graph_def, input_nodes, src.constants)
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.graph_util.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.OpError, KeyError) as exc:
            raise InputError(f"{graph_path} cannot be imported as a TensorFlow graph: {str(exc)[:400]}") from exc
    variables = [n.name for n in graph_def.node if n.op in VARIABLE_OPS]
    if src.format == "FrozenGraph" and variables:
        raise InputError(
            f"{graph_path} is not frozen: it holds variables ({', '.join(variables[:5])}); "
            "use format: Checkpoint with its checkpoint prefix"
        )
    inputs, outputs = _graph_endpoints(graph, graph_def, src)
    check_fed(graph_def, [e.node for e in inputs], [o.node for o in outputs])
    sess = tf.compat.v1.Session(graph=graph)
    try:
        if prefix is not None:
            # The converter's own restore (checkpoint reader + assign), never the model's saver ops.
            _restore_into(sess, graph_def, prefix)
        reference = _session_reference(sess, inputs, outputs)
    except BaseException:
        sess.close()
        raise
    return LoadedModel(src.format, graph_def, inputs, outputs, reference, session=sess, constants=bound)


def _signature_endpoints(func: Any, src: Source, where: str) -> tuple[list[Endpoint], list[Endpoint]]:
    in_specs = func.structured_input_signature[1]
    out_specs = func.structured_outputs
    if not isinstance(out_specs, dict):
        out_specs = {f"output_{i}": t for i, t in enumerate(tf.nest.flatten(out_specs))}
    inputs = {k: Endpoint(k, "", triton_dtype(s.dtype.name), _tensor_shape(s)) for k, s in sorted(in_specs.items())}
    outputs = {k: Endpoint(k, "", triton_dtype(s.dtype.name), _tensor_shape(s)) for k, s in sorted(out_specs.items())}
    for i, spec in enumerate(src.inputs):
        ep = inputs.get(spec.name)
        if ep is None:
            raise InputError(
                f"spec.source.inputs[{i}]: {where} has no input named {spec.name!r}; its inputs are: "
                f"{', '.join(inputs)}"
            )
        inputs[spec.name] = _check_declared(spec, ep, f"spec.source.inputs[{i}] {spec.name!r}")
    chosen = list(outputs.values())
    if src.outputs:
        unknown = [o for o in src.outputs if o not in outputs]
        if unknown:
            raise InputError(
                f"spec.source.outputs: {where} has no output named {unknown[0]!r}; closest names: "
                f"{_closest(unknown[0], list(outputs))}; its outputs are: {', '.join(outputs)}"
            )
        chosen = [outputs[o] for o in src.outputs]
    return list(inputs.values()), chosen


def _function_reference(func: Any, outputs: list[Endpoint]) -> ModelFn:
    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = func(**{k: tf.constant(v) for k, v in feeds.items()})
        return {o.key: np.asarray(result[o.key]) for o in outputs}

    return run


def check_saved_model(path: Path) -> None:
    """Parse ``saved_model.pb`` and run the op policy on every meta graph and function, before loading."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    pb = path / "saved_model.pb"
    try:
        if pb.exists():
            saved.ParseFromString(_read_capped(pb, Limits.from_env()))
        else:
            text_format.Parse(_read_capped(path / "saved_model.pbtxt", Limits.from_env()).decode(), saved)
    except (pb_message.DecodeError, text_format.ParseError, UnicodeDecodeError, RuntimeWarning, ValueError) as exc:
        raise InputError(f"SavedModel {path}: saved_model.pb is unreadable ({str(exc)[:200]}); is it corrupt?") from exc
    for k, meta in enumerate(saved.meta_graphs):
        where = f"SavedModel {path} (meta graph {k})"
        nodes, functions = policy.saved_model_saver_exemptions(meta, where)
        policy.check(meta.graph_def, where, exempt_nodes=nodes, exempt_functions=functions)


def _load_saved_model(model: OptimizedModel) -> LoadedModel:
    src = model.spec.source
    path = _source_dir(src)
    if not (path / "saved_model.pb").exists() and not (path / "saved_model.pbtxt").exists():
        raise InputError(f"spec.source.uri {src.uri!r}: {path} is not a SavedModel directory (no saved_model.pb)")
    _directory_files(path, Limits.from_env(), f"SavedModel {path}")
    check_saved_model(path)
    try:
        obj = tf.saved_model.load(str(path))
    except (tf.errors.OpError, ValueError, OSError, pb_message.DecodeError) as exc:
        raise InputError(f"SavedModel {path} cannot be loaded: {str(exc).splitlines()[0][:400]}") from exc
    sigs = obj.signatures
    if src.signature not in sigs:
        raise InputError(
            f"spec.source.signature {src.signature!r}: the SavedModel {path} has no such signature; "
            f"it has: {', '.join(sigs) or 'none'}"
        )
    func = sigs[src.signature]
    inputs, outputs = _signature_endpoints(func, src, f"signature {src.signature!r}")
    graph_def = func.graph.as_graph_def()
    return LoadedModel(
        "SavedModel", graph_def, inputs, outputs, _function_reference(func, outputs), function=func, keep_alive=[obj]
    )


def _keras_file(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(p for p in path.iterdir() if p.suffix in (".keras", ".h5"))
    if len(found) != 1:
        raise InputError(
            f"spec.source.uri: {path} must be a .keras/.h5 file or a directory holding exactly one "
            f"(found {len(found)})"
        )
    return contained(path, found[0], f"Keras model {found[0].name}")


def _keras_config(path: Path) -> Any:
    """The model's architecture as stored (config.json of a .keras zip, model_config of an .h5), unexecuted."""
    import json
    import zipfile

    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as zf:
                info = zf.getinfo("config.json")
                Limits.from_env().refuse_size("graph_bytes", info.file_size, f"{path} config.json")
                return json.loads(zf.read(info))
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            if raw is None:
                raise InputError(f"Keras model {path} has no model_config: it holds weights only, not a model")
            return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except InputError:
        raise
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"Keras model {path} cannot be read ({str(exc)[:200]}); is it corrupt?") from exc


def _refuse_keras_code(config: Any, path: Path) -> None:
    """Lambda layers and custom classes carry Python code: refuse them before Keras sees the file."""
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        stack.extend(item.values())
        cls, module = item.get("class_name"), item.get("module")
        name = (item.get("config") or {}).get("name") if isinstance(item.get("config"), dict) else None
        if cls in ("Lambda", "__lambda__", "TFOpLambda"):
            raise InputError(
                f"Keras model {path} holds a Lambda layer{f' {name!r}' if name else ''}: Lambda layers carry "
                "Python code, which edgeopt never runs (Keras safe mode); rebuild the layer from built-in Keras "
                "layers, or export the model as a SavedModel and convert that"
            )
        if isinstance(module, str) and not (module == "keras" or module.startswith("keras.")):
            raise InputError(
                f"Keras model {path} uses {cls!r} from module {module!r}: custom classes are Python code, which "
                "edgeopt never imports; use built-in Keras layers, or export the model as a SavedModel"
            )


def _load_keras(model: OptimizedModel) -> LoadedModel:
    import keras

    src = model.spec.source
    path = _keras_file(_source_dir(src))
    if path.suffix not in (".keras", ".h5"):
        raise InputError(f"spec.source.uri: {path} is not a .keras or .h5 file")
    Limits.from_env().refuse_size("keras_bytes", path.stat().st_size, f"Keras model {path}")
    _refuse_keras_code(_keras_config(path), path)
    try:
        # safe_mode explicitly: it refuses deserializing Python code (the HDF5 case needs keras >= 3.11.3).
        km = keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:
        raise InputError(f"Keras model {path} cannot be loaded: {str(exc).splitlines()[0][:400]}") from exc
    in_names = [sanitize_key(t.name) for t in km.inputs]
    out_names = [sanitize_key(n) for n in getattr(km, "output_names", None) or []]
    if len(out_names) != len(km.outputs):
        out_names = [f"output_{i}" for i in range(len(km.outputs))]
    specs = [tf.TensorSpec(t.shape, t.dtype, name=n) for t, n in zip(km.inputs, in_names, strict=False)]

    @tf.function(input_signature=specs)
    def serve(*args: Any) -> dict[str, Any]:
        result = km(list(args) if len(args) > 1 else args[0], training=False)
        return dict(zip(out_names, tf.nest.flatten(result), strict=False))

    concrete = serve.get_concrete_function()

    def signature(**kwargs: Any) -> Any:
        return concrete(*[kwargs[n] for n in in_names])

    inputs = [
        Endpoint(n, "", triton_dtype(tf.as_dtype(s.dtype).name), _tensor_shape(s))
        for n, s in zip(in_names, specs, strict=False)
    ]
    outputs = [
        Endpoint(n, "", triton_dtype(t.dtype.name), _tensor_shape(t))
        for n, t in zip(out_names, tf.nest.flatten(concrete.structured_outputs), strict=False)
    ]
    by_name = {e.key: e for e in inputs}
    for i, spec in enumerate(src.inputs):
        if spec.name not in by_name:
            raise InputError(
                f"spec.source.inputs[{i}]: the Keras model has no input named {spec.name!r}; "
                f"its inputs are: {', '.join(by_name)}"
            )
        by_name[spec.name] = _check_declared(spec, by_name[spec.name], f"spec.source.inputs[{i}] {spec.name!r}")
    inputs = list(by_name.values())
    graph_def = concrete.graph.as_graph_def()
    return LoadedModel(
        "Keras",
        graph_def,
        inputs,
        outputs,
        _function_reference(signature, outputs),
        function=concrete,
        keep_alive=[km, serve],
    )


def load_model(model: OptimizedModel) -> LoadedModel:
    """Open the source named by the spec; raise InputError with one clear paragraph when it is wrong."""
    fmt = model.spec.source.format
    if fmt in ("Checkpoint", "FrozenGraph"):
        return _load_graph_format(model)
    if fmt == "SavedModel":
        return _load_saved_model(model)
    if fmt == "Keras":
        return _load_keras(model)
    raise InputError(f"spec.source.format {fmt!r} is not supported")
