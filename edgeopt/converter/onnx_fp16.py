"""ONNX stage — FP16: weights and arithmetic in FP16 inside the graph, whoever runs it.

TensorRT 11 removed weak typing: no FP16 builder flag, precision lives in the
network.  So for ``tensorrt.precision: FP16`` the ONNX file itself is FP16,
for the CUDA EP, ORT's TensorRT accelerator and the plan builder alike
(``trt_build`` parses it strongly typed).

The conversion is ONNX Runtime's ``onnxruntime.transformers.float16`` (a
maintained fork of onnxconverter-common's ``float16``, already installed with
onnxruntime, same algorithm and block list).  Measured on MobileNetV2,
ResNet50 and EfficientNetB0 at 224 (logits, random weights, BN statistics
from data) the two gave identical graphs and errors against TensorFlow
(``bench/gpu_ort_prep.py``), so the one already installed is used.

- Inputs and outputs keep the spec's dtypes (``keep_io_types``): the Triton
  config and the clients do not change; a Cast at each end converts.
- Numerically sensitive ops stay FP32 (``FP32_OPS``): reductions (a sum of
  many FP16 values loses the small ones and can overflow), Softmax and its
  log, normalizations, Exp/Log/Pow, plus the converter's own block list
  (``DEFAULT_OP_BLOCK_LIST``: ops with FP32-only kernels such as TopK,
  Range, NonMaxSuppression).  Casts go around them.
- The report counts the nodes computing in FP16, in FP32, and the casts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.errors import ConversionError

#: Ops kept in FP32 beyond the converter's own block list (where FP16's 10-bit mantissa or 65504 range bites).
FP32_OPS = frozenset(
    {
        # reductions: long sums lose small terms, sums of squares overflow
        "ReduceMean",
        "ReduceSum",
        "ReduceSumSquare",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceProd",
        "GlobalLpPool",
        "CumSum",
        # softmax family: exp of large logits overflows FP16
        "Softmax",
        "LogSoftmax",
        "Hardmax",
        # normalizations: variance of FP16 values, epsilon below FP16's resolution
        "BatchNormalization",
        "InstanceNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "LpNormalization",
        "MeanVarianceNormalization",
        "SimplifiedLayerNormalization",
        "SkipLayerNormalization",
        # exp/log: range
        "Exp",
        "Log",
        "Pow",
    }
)

#: ONNX TensorProto element types counted in the report.
_FLOAT16, _FLOAT = 10, 1


def op_block_list() -> list[str]:
    """The ops kept FP32: the converter's own block list plus ``FP32_OPS``."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    return sorted(set(DEFAULT_OP_BLOCK_LIST) | FP32_OPS)


def convert(model: Any, keep_fp32: Sequence[str] = ()) -> Any:
    """The FP16 ModelProto of an FP32 ``model``; inputs and outputs keep their types.

    ``keep_fp32`` names nodes that stay FP32 besides the block-listed ops (the FP32 prefix, ``to_fp16``).
    The converter edits the graph it is given, so it gets a copy.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    copy = type(model)()
    copy.CopyFrom(model)
    try:
        half = convert_float_to_float16(
            copy, keep_io_types=True, op_block_list=op_block_list(), node_block_list=list(keep_fp32) or None
        )
    except (ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).splitlines()[0][:400] if str(exc) else type(exc).__name__
        raise ConversionError(
            f"FP16 conversion of the ONNX graph failed: {first}; publish FP32 (tensorrt.precision: FP32)"
        ) from exc
    drop_round_trips(half)
    return half


def _cast_to(node: Any) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None


def drop_round_trips(model: Any) -> int:
    """Remove FP32→FP16→FP32 cast round trips in place; return how many FP32 consumers now read FP32.

    The converter casts the output of every FP32 node to FP16 and back for the next FP32 node, so a
    chain of them (the FP32 prefix, or the graph input feeding one) would still round each tensor to
    FP16 on the way: what was kept FP32 would not be.  Consumers of the back-cast read the FP32 tensor
    instead; a forward cast left without consumers goes too.  Only FP32→FP16→FP32 pairs, which lose
    precision, are touched.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    outputs = {o.name for o in graph.output}
    rewired: dict[str, str] = {}
    for node in graph.node:
        if _cast_to(node) != _FLOAT:
            continue
        first = producer.get(node.input[0])
        if first is None or _cast_to(first) != _FLOAT16 or node.output[0] in outputs:
            continue
        rewired[node.output[0]] = first.input[0]
    if not rewired:
        return 0
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in rewired:
                node.input[k] = rewired[name]
    used = {name for node in graph.node for name in node.input} | outputs
    keep = [n for n in graph.node if not (n.op_type == "Cast" and not any(o in used for o in n.output))]
    del graph.node[:]
    graph.node.extend(keep)
    return len(rewired)


def to_fp16(src: Path, dst: Path, use_of: Callable[[Any], float] | None = None) -> dict[str, Any]:
    """Write the FP16 model ``dst`` from the FP32 ``src``; return what the report records.

    With ``use_of`` (how much of the FP16 tolerance a candidate graph uses, ``validation.fp16Rtol/Atol``
    on the CPU's emulation of a GPU: ``onnx_validate.GpuFp16Check``, whose last call is the graph written)
    the graph gets the shortest FP32 prefix (``prefix_sizes``) that
    stays within ``HEADROOM``: the first layers of a deep net are where FP16's rounding is amplified most.
    """
    import onnx

    fp32 = onnx.load(str(src))
    total = sum(node.op_type in COMPUTE_OPS for node in fp32.graph.node)
    last: dict[int, Any] = {}

    def uses(k: int) -> float:
        last.clear()
        last[k] = convert(fp32, prefix(fp32, k))
        return use_of(last[k]) if use_of else 0.0

    k, tried = choose_prefix(uses, prefix_sizes(total) if use_of else [0])
    if k not in last:  # none fitted and the best was not the last tried: ``use_of`` last sees what is written
        uses(k)
    half = last[k]
    counts = node_precisions(half)
    if counts["fp16"] == 0:
        raise ConversionError(
            "FP16 conversion left no node computing in FP16 (every op is on the FP32 list): publish FP32"
        )
    onnx.save_model(half, str(dst))
    kept = prefix(fp32, k)
    return {
        "converter": "onnxruntime.transformers.float16",
        "keepIoTypes": True,
        "fp32Ops": sorted(FP32_OPS),
        "fp32Prefix": {
            "computeNodes": k,
            "ofComputeNodes": total,
            "nodes": len(kept),
            "through": kept[-1] if kept else None,
            "tried": [{"computeNodes": int(t[0]), "toleranceUse": t[1]} for t in tried] if use_of else [],
            "headroom": HEADROOM,
        },
        "nodes": counts,
        "fileBytes": dst.stat().st_size,
    }


def _elem_types(model: Any) -> dict[str, int]:
    """Element type of every typed tensor name: graph inputs/outputs, initializers, value_info."""
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    types.update({i.name: i.data_type for i in graph.initializer})
    return types


def node_kinds(model: Any) -> list[tuple[str, str]]:
    """(op type, precision) of each node in graph order: "fp16", "fp32", "cast" or "other".

    A node's precision is the float type of its first typed float output, else of its first typed float
    input.
    """
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # counting must not fail a converted model: fall back to the types it carries
        inferred = model
    types = _elem_types(inferred)
    kinds = []
    for node in inferred.graph.node:
        floats = [types[n] for n in (*node.output, *node.input) if types.get(n) in (_FLOAT16, _FLOAT)]
        kind = {_FLOAT16: "fp16", _FLOAT: "fp32"}.get(floats[0], "other") if floats else "other"
        kinds.append((node.op_type, "cast" if node.op_type == "Cast" else kind))
    return kinds


def node_precisions(model: Any) -> dict[str, int]:
    """Nodes computing in FP16, in FP32, Casts, and the rest (integer/shape ops), from tensor types."""
    counts: Counter[str] = Counter({"fp16": 0, "fp32": 0, "cast": 0, "other": 0})
    counts.update(kind for _op, kind in node_kinds(model))
    return dict(counts)


#: Ops whose FP16 weights and rounded inputs the FP32 prefix (``to_fp16``) can give back their precision.
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
#: ``to_fp16`` keeps a prefix when the FP16 graph uses more than this share of the FP16 tolerance on the
#: CPU's emulation of a GPU: room for the GPU's own summation order and for inputs the validation did not
#: see.  Measured on an H200 (bench/README.md, "FP16 on the GPU"): a random-weight ResNet50 at 0.85 of the
#: tolerance on 8 samples had 17 of 64,000 logits outside it at batch 64; with 8 convolutions FP32 (0.30), none.
HEADROOM = 0.5
#: The longest prefix ``to_fp16`` tries, as a share of the compute nodes: beyond it FP16 buys little.
MAX_PREFIX_SHARE = 0.25


def prefix(model: Any, k: int) -> list[str]:
    """Every node of the main graph up to the ``k``-th compute node: the FP32 prefix of length ``k``.

    The ops in between (Relu, Add, pooling) belong to it: left FP16, each would round the FP32 conv's
    output to FP16 again on its way to the next one.
    """
    if k <= 0:
        return []
    out, seen = [], 0
    for node in model.graph.node:
        out.append(node.name)
        seen += node.op_type in COMPUTE_OPS
        if seen >= k:
            break
    return [name for name in out if name]


def prefix_sizes(total: int) -> list[int]:
    """The FP32 prefix lengths ``to_fp16`` tries: 0, then doubling up to ``MAX_PREFIX_SHARE`` of ``total``."""
    cap = int(total * MAX_PREFIX_SHARE)
    sizes, k = [0], 1
    while k <= cap:
        sizes.append(k)
        k *= 2
    if cap and sizes[-1] != cap:
        sizes.append(cap)
    return sizes


def choose_prefix(uses: Callable[[int], float], sizes: Sequence[int], headroom: float = HEADROOM) -> tuple[int, list]:
    """The first size whose tolerance use is within ``headroom``, else the one with the least use.

    Returns the size and what was tried (``[size, use]`` pairs, in order), for the report.
    """
    tried: list[list[float]] = []
    for k in sizes:
        use = uses(k)
        tried.append([k, round(use, 4) if np.isfinite(use) else use])
        if use <= headroom:
            return k, tried
    best = min(tried, key=lambda t: t[1])
    return int(best[0]), tried


def storage_emulation(half: Any) -> Any:
    """An FP32 graph that rounds every FP16 tensor of ``half`` to FP16: what a GPU computes, on a CPU.

    ONNX Runtime's CPU kernels lack most FP16 ops, so on a CPU they run in FP32 between casts that its
    optimizer merges: the activations never round to FP16 there, and a CPU validation of ``half`` alone
    can pass a graph that misses the tolerance on a GPU (a ResNet50 did, on an H200).  Here the weights
    keep their FP16 values and each FP16 output passes through Cast(FP16)→Cast(FP32), as a GPU stores
    it; arithmetic is FP32, as on tensor cores with FP32 accumulation.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.shape_inference.infer_shapes(half)
    graph = model.graph
    types = _elem_types(model)

    def widen(tensor: Any) -> None:
        if tensor.data_type == TensorProto.FLOAT16:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name))

    for init in graph.initializer:
        widen(init)
    nodes = []
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                widen(attr.t)
            elif node.op_type != "Cast" and attr.name == "dtype" and attr.i == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT
        nodes.append(node)
        for k, name in enumerate(node.output):
            if types.get(name) == TensorProto.FLOAT16:
                node.output[k] = f"{name}__fp16emu_in"
                nodes.append(helper.make_node("Cast", [node.output[k]], [f"{name}__fp16emu"], to=TensorProto.FLOAT16))
                nodes.append(helper.make_node("Cast", [f"{name}__fp16emu"], [name], to=TensorProto.FLOAT))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    for value in (*graph.input, *graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    return model
