"""ONNX stage — export: the optimized frozen graph to ONNX with tf2onnx.

NVIDIA's route for TensorFlow models on a current Triton is TF → ONNX →
ONNX Runtime / TensorRT, so the ONNX path starts from the same frozen and
optimized GraphDef the TF-TRT path exports as a SavedModel.  What this stage
guarantees about ``model.onnx``:

- every op is a real ONNX op: tf2onnx only *logs* a TensorFlow op it cannot
  convert and leaves it in the graph, so the graph is checked against the
  ONNX op registry and an unconvertible op fails here, named;
- ``onnx.checker`` accepts the model;
- the graph's inputs and outputs carry the signature keys (what Triton
  clients send), not tf2onnx's ``node:0`` tensor names;
- a variable batch dimension stays variable (named ``batch``), so Triton can
  batch and TensorRT can build a 1..maxBatchSize profile.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeopt.artifact import TensorInfo
from edgeopt.converter.graph_model import Endpoint, FrozenModel
from edgeopt.errors import ConversionError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: ONNX element type → Triton dtype (the subset a TensorFlow signature produces).
ONNX_TO_TRITON = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "BYTES",
    9: "BOOL",
    10: "FP16",
    11: "FP64",
    12: "UINT32",
    13: "UINT64",
    16: "BF16",
}
#: Domains whose ops ONNX Runtime (and, for the default domain, TensorRT) implement.
KNOWN_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")
BATCH_DIM = "batch"


def unknown_ops(model: Any) -> Counter[str]:
    """Ops neither ONNX nor ONNX Runtime's contrib domain defines: what tf2onnx left unconverted."""
    import onnx

    opset = {o.domain: o.version for o in model.opset_import}
    missing: Counter[str] = Counter()
    for node in model.graph.node:
        domain = node.domain or ""
        if domain not in KNOWN_DOMAINS:
            missing[f"{domain}.{node.op_type}"] += 1
            continue
        if domain == "com.microsoft":
            continue  # ORT contrib ops have no schema in onnx.defs; tf2onnx only emits ones ORT has
        try:
            onnx.defs.get_schema(node.op_type, opset.get(domain, opset.get("", 1)), domain)
        except onnx.defs.SchemaError:
            missing[node.op_type] += 1
    return missing


#: Name-scope segments that are TensorFlow's plumbing, not a Keras layer.
_PLUMBING = {"StatefulPartitionedCall", "PartitionedCall", "while", "body", "cond"}


def layer_of(node_name: str) -> str | None:
    """The Keras layer's scope an ONNX node came from, read off its TensorFlow name (None: top level).

    ``StatefulPartitionedCall/convnext_tiny_1/stage_0_depthwise_conv_1/StatefulPartitionedCall`` →
    ``stage_0_depthwise_conv_1`` (Keras 3 scopes a layer by its name, TensorFlow may add ``_N``).
    """
    scopes = [s for s in node_name.split("/")[:-1] if s not in _PLUMBING]
    return scopes[-1] if scopes else None


def unconvertible(model: Any, missing: Counter[str]) -> str:
    """``op (xN) in layer(s) a, b`` for the ops tf2onnx left, for the refusal."""
    parts = []
    for op, n in sorted(missing.items()):
        bare = op.split(".")[-1]
        layers = sorted({lay for node in model.graph.node if node.op_type == bare if (lay := layer_of(node.name))})
        where = f" in layer(s) {', '.join(layers[:5])}{', ...' if len(layers) > 5 else ''}" if layers else ""
        parts.append(f"{op}{f' (x{n})' if n > 1 else ''}{where}")
    return "; ".join(parts)


def _rename_tensors(model: Any, renames: dict[str, str]) -> None:
    """Give graph inputs/outputs the signature keys, everywhere the tensor is referenced."""
    taken = {n for node in model.graph.node for n in (*node.input, *node.output)}
    taken |= {i.name for i in model.graph.initializer}
    clash = sorted(new for old, new in renames.items() if new != old and new in taken)
    if clash:
        raise ConversionError(f"cannot name ONNX tensors after the signature keys: {', '.join(clash)} already exist")
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        value.name = renames.get(value.name, value.name)


def _name_batch_dim(model: Any, endpoints: Sequence[Endpoint]) -> None:
    """tf2onnx calls a -1 dim ``unk__N``; the batch dim gets one shared, readable name."""
    batched = {e.key for e in endpoints if e.shape and e.shape[0] == -1}
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if value.name in batched and dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM


def signature(model: Any) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """The ONNX graph's inputs and outputs as Triton sees them (-1 for symbolic dims)."""

    def info(value: Any) -> TensorInfo:
        tensor = value.type.tensor_type
        dtype = ONNX_TO_TRITON.get(tensor.elem_type)
        if dtype is None:
            raise ConversionError(f"ONNX tensor {value.name!r} has element type {tensor.elem_type}, unknown to Triton")
        shape = [int(d.dim_value) if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        return TensorInfo(value.name, dtype, shape)

    initializers = {i.name for i in model.graph.initializer}
    inputs = [info(v) for v in model.graph.input if v.name not in initializers]
    return sorted(inputs, key=lambda t: t.name), sorted((info(v) for v in model.graph.output), key=lambda t: t.name)


def op_counts(model: Any) -> dict[str, Any]:
    by_type = Counter(n.op_type for n in model.graph.node)
    return {"total": sum(by_type.values()), "byType": dict(sorted(by_type.items()))}


def _convert(frozen: FrozenModel, opset: int) -> Any:
    import tf2onnx

    # tf2onnx logs every node at INFO and repeats TF's deprecation notices; keep the Job log readable.
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    try:
        model, _ = tf2onnx.convert.from_graph_def(
            frozen.graph_def,
            input_names=[e.tensor for e in frozen.inputs],
            output_names=[e.tensor for e in frozen.outputs],
            opset=opset,
        )
    except Exception as exc:  # tf2onnx raises bare Exception/ValueError/KeyError for graphs it cannot handle
        first = str(exc).splitlines()[0][:400] if str(exc) else type(exc).__name__
        raise ConversionError(
            f"tf2onnx could not convert the optimized graph at opset {opset}: {first}; try another "
            "spec.onnx.opset, or the TF-TRT path (target.backend tensorflow/python)"
        ) from exc
    return model


def export_onnx(frozen: FrozenModel, path: Path, *, opset: int) -> dict[str, Any]:
    """Write ``path`` (model.onnx) from the frozen graph; return what the report records."""
    import onnx

    model = _convert(frozen, opset)
    missing = unknown_ops(model)
    if missing:
        raise ConversionError(
            f"ONNX (opset {opset}) has no form for the TensorFlow op(s) {unconvertible(model, missing)}: nothing "
            "was published; the TF path (target.backend python or tensorflow) runs every TensorFlow op, or leave "
            "those ops out of the exported signature (e.g. string preprocessing done by the client)"
        )
    renames = {e.tensor: e.key for e in (*frozen.inputs, *frozen.outputs)}
    _rename_tensors(model, renames)
    _name_batch_dim(model, [*frozen.inputs, *frozen.outputs])
    model.producer_name = "edgeopt (tf2onnx)"
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"the ONNX checker rejects the exported model: {str(exc).splitlines()[0][:400]}") from exc
    onnx.save_model(model, str(path))
    inputs, outputs = signature(model)
    check_signature(inputs, outputs, frozen)
    return {
        "opset": opset,
        "ops": op_counts(model),
        "fileBytes": path.stat().st_size,
        "inputs": [vars(t) for t in inputs],
        "outputs": [vars(t) for t in outputs],
    }


def check_signature(inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo], frozen: FrozenModel) -> None:
    """The ONNX graph must take and give exactly the signature's tensors, batch dim kept."""
    want_in = sorted(e.key for e in frozen.inputs)
    want_out = sorted(e.key for e in frozen.outputs)
    if [t.name for t in inputs] != want_in or [t.name for t in outputs] != want_out:
        raise ConversionError(
            f"the ONNX graph's inputs {[t.name for t in inputs]} / outputs {[t.name for t in outputs]} do not "
            f"match the signature's {want_in} / {want_out}"
        )
    by_key = {e.key: e for e in (*frozen.inputs, *frozen.outputs)}
    for t in (*inputs, *outputs):
        e = by_key[t.name]
        if e.shape and e.shape[0] == -1 and (not t.shape or t.shape[0] != -1):
            raise ConversionError(f"ONNX tensor {t.name!r} lost its variable batch dimension (shape {t.shape})")


def onnx_signature_of(path: Path) -> tuple[list[TensorInfo], list[TensorInfo]]:
    import onnx

    return signature(onnx.load(str(path), load_external_data=False))
