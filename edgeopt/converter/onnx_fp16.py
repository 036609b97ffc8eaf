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
from pathlib import Path
from typing import Any

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


def convert(model: Any) -> Any:
    """The FP16 ModelProto of an FP32 ``model``; inputs and outputs keep their types."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        return convert_float_to_float16(model, keep_io_types=True, op_block_list=op_block_list())
    except (ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).splitlines()[0][:400] if str(exc) else type(exc).__name__
        raise ConversionError(
            f"FP16 conversion of the ONNX graph failed: {first}; publish FP32 (tensorrt.precision: FP32)"
        ) from exc


def to_fp16(src: Path, dst: Path) -> dict[str, Any]:
    """Write the FP16 model ``dst`` from the FP32 ``src``; return what the report records."""
    import onnx

    half = convert(onnx.load(str(src)))
    counts = node_precisions(half)
    if counts["fp16"] == 0:
        raise ConversionError(
            "FP16 conversion left no node computing in FP16 (every op is on the FP32 list): publish FP32"
        )
    onnx.save_model(half, str(dst))
    return {
        "converter": "onnxruntime.transformers.float16",
        "keepIoTypes": True,
        "fp32Ops": sorted(FP32_OPS),
        "nodes": counts,
        "fileBytes": dst.stat().st_size,
    }


def _elem_types(model: Any) -> dict[str, int]:
    """Element type of every typed tensor name: graph inputs/outputs, initializers, value_info."""
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    types.update({i.name: i.data_type for i in graph.initializer})
    return types


def node_precisions(model: Any) -> dict[str, int]:
    """Nodes computing in FP16, in FP32, Casts, and the rest (integer/shape ops), from tensor types.

    A node's precision is the float type of its first typed float output, else of its first typed float
    input; shape inference fills in the types the converter left out.
    """
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # counting must not fail a converted model: fall back to the types it carries
        inferred = model
    types = _elem_types(inferred)
    counts: Counter[str] = Counter({"fp16": 0, "fp32": 0, "cast": 0, "other": 0})
    for node in inferred.graph.node:
        if node.op_type == "Cast":
            counts["cast"] += 1
            continue
        floats = [types[n] for n in (*node.output, *node.input) if types.get(n) in (_FLOAT16, _FLOAT)]
        kind = {_FLOAT16: "fp16", _FLOAT: "fp32"}.get(floats[0]) if floats else "other"
        counts[kind or "other"] += 1
    return dict(counts)
