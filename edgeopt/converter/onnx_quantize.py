"""ONNX stage — INT8: explicit quantization with ``onnxruntime.quantization.quantize_static``.

TensorRT 11 dropped implicit INT8 calibration; INT8 is now Q/DQ nodes in the
ONNX graph, made here from the spec's calibration data (the same
``tensorrt.calibration`` block TF-TRT uses; seeded random data only when the
spec opts in with ``synthetic: true``).

The layout follows where the model runs, because the fastest layout differs:

- TensorRT (``backend: tensorrt``, or the TensorRT accelerator of the ONNX
  Runtime backend on GPU): symmetric signed INT8 activations and weights as
  Q/DQ pairs (S8S8 QDQ) — TensorRT's explicit-quantization format.
- ONNX Runtime on CPU: uint8 activations, int8 weights (U8S8) as quantized
  operators (QOperator: QLinearConv, QLinearMatMul...).  Measured on this
  machine (AVX-512 VNNI) with MobileNetV2 at batch 1: U8S8 QOperator ran at
  0.68x FP32, U8S8 QDQ at 0.86x, and S8S8 QDQ 1.3x *slower* than FP32; the
  bench (``bench/onnx_paths.py``) re-measures QOperator vs QDQ side by side.
- ONNX Runtime on GPU without TensorRT (CUDA EP): S8S8 QDQ, the portable form.

Weights are always quantized per channel.  The report says which layout.

The output head stays in float (``float_nodes``): a Softmax quantized to a
fixed 1/256 step turns every probability under ~0.002 into exactly 0, and
logits after the last MatMul/Conv carry what a classifier means.  So every
node between the last MatMul/Gemm/Conv and an output, and every Softmax and
LogSoftmax anywhere (attention too), is excluded from quantization; the
report lists them (``floatNodes``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.artifact import TensorInfo
from edgeopt.converter import feeds, trt_plan
from edgeopt.errors import ConversionError, InputError
from edgeopt.spec import ModelSpec, onnx_device

#: Largest batch fed to the calibrator at once (memory: Entropy/Percentile keep histograms per tensor).
CALIBRATION_BATCH = 8


@dataclass(frozen=True)
class QuantLayout:
    """How the INT8 model is laid out, and why (recorded in the report)."""

    name: str  # "S8S8-QDQ" | "U8S8-QOperator" | "U8S8-QDQ"
    quant_format: str  # "QDQ" | "QOperator"
    activations: str  # "int8" | "uint8"
    weights: str  # "int8"
    symmetric_activations: bool
    per_channel: bool
    reason: str

    def as_report(self) -> dict[str, Any]:
        return asdict(self)


S8S8_QDQ = QuantLayout(
    "S8S8-QDQ", "QDQ", "int8", "int8", True, True, "TensorRT explicit INT8: symmetric signed Q/DQ pairs"
)
U8S8_QOPERATOR = QuantLayout(
    "U8S8-QOperator",
    "QOperator",
    "uint8",
    "int8",
    False,
    True,
    "ONNX Runtime CPU: uint8 activations x int8 weights in QLinear* kernels, the fastest layout measured here",
)
U8S8_QDQ = QuantLayout(
    "U8S8-QDQ", "QDQ", "uint8", "int8", False, True, "ONNX Runtime CPU, Q/DQ form (bench comparison)"
)


def runs_on_tensorrt(spec: ModelSpec) -> bool:
    """TensorRT executes the graph: the plan backend, or the ORT backend's TensorRT accelerator (GPU only)."""
    target = spec.target
    if target.backend == "tensorrt":
        return True
    return target.backend == "onnxruntime" and onnx_device(spec) == "GPU" and spec.tensorrt.enabled


def layout_for(spec: ModelSpec) -> QuantLayout:
    """The INT8 layout the target runs fastest (see the module docstring for the measurements)."""
    if runs_on_tensorrt(spec):
        return S8S8_QDQ
    if onnx_device(spec) == "CPU":
        return U8S8_QOPERATOR
    return S8S8_QDQ


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over in-memory batches."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self._batches = batches
        self._it: Iterator[dict[str, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._batches)


#: The ops whose output INT8 rounds away: probabilities (every Softmax); Sigmoid only in the head.
FLOAT_ANYWHERE = ("Softmax", "LogSoftmax")
#: Where the head starts: the last op that does a model's heavy arithmetic on each path to an output.
COMPUTE_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum")


def float_nodes(model: Any) -> list[dict[str, str]]:
    """The nodes INT8 leaves in float: the output heads, and every Softmax/LogSoftmax.

    The head of an output is everything reached walking back from it without crossing a
    MatMul/Gemm/Conv; a path that reaches a graph input without one has no head (nothing heavy
    to keep quantized behind it), so it adds nothing.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    keep: dict[str, Any] = {n.name: n for n in graph.node if n.op_type in FLOAT_ANYWHERE}
    for output in graph.output:
        head: dict[str, Any] = {}
        stack = [output.name]
        while stack:
            node = producer.get(stack.pop())  # None: a graph input or an initializer
            if node is None or node.op_type in COMPUTE_OPS or node.name in head:
                continue
            head[node.name] = node
            stack.extend(i for i in node.input if i)
        if not _reaches_input(head.values(), graph):
            keep.update(head)
    return [{"name": name, "op": node.op_type} for name, node in sorted(keep.items())]


def _reaches_input(nodes: Any, graph: Any) -> bool:
    inputs = {i.name for i in graph.input}
    return any(i in inputs for node in nodes for i in node.input)


def calibration_data(
    spec: ModelSpec, inputs: Sequence[TensorInfo]
) -> tuple[list[dict[str, np.ndarray]], dict[str, Any]]:
    """Calibration batches from the spec (shapes checked against the ONNX inputs) and where they came from."""
    arrays, origin = trt_plan.calibration_arrays(spec.tensorrt, inputs, seed=spec.validation.seed)
    samples = int(len(next(iter(arrays.values())))) if arrays else 0
    if samples == 0:
        raise InputError(f"calibration data ({origin}) holds no samples; INT8 needs at least one")
    batch = max(1, min(CALIBRATION_BATCH, spec.tensorrt.max_batch_size))
    batches = feeds.split_batches(arrays, batch)
    return batches, {"source": origin, "samples": samples, "batches": len(batches)}


def quantize(src: Path, dst: Path, spec: ModelSpec, inputs: Sequence[TensorInfo]) -> dict[str, Any]:
    """Write the INT8 model ``dst`` from the FP32 ``src``; return layout, calibration and op counts."""
    import onnx

    layout = layout_for(spec)
    batches, calibration = calibration_data(spec, inputs)
    keep = float_nodes(onnx.load(str(src), load_external_data=False))
    details = quantize_with(src, dst, layout, batches, spec.onnx.calibration_method, exclude=[n["name"] for n in keep])
    return {**details, "calibration": calibration, "floatNodes": keep}


def remedy(details: dict[str, Any]) -> str:
    """What would help an INT8 model that fails validation, judged from how it was made."""
    steps = []
    if (details.get("calibration") or {}).get("source") == "synthetic":
        steps.append("calibrate on real inputs (tensorrt.calibration.uri): random data sets wrong activation ranges")
    steps.append("publish FP16 or FP32 (tensorrt.precision), which keep every layer in float")
    return "; ".join(steps)


def quantize_with(
    src: Path,
    dst: Path,
    layout: QuantLayout,
    batches: list[dict[str, np.ndarray]],
    method: str,
    *,
    exclude: Sequence[str] = (),
) -> dict[str, Any]:
    """The quantize_static call itself (the bench uses it to compare layouts)."""
    import onnx
    from onnxruntime import quantization as q

    qtype = {"int8": q.QuantType.QInt8, "uint8": q.QuantType.QUInt8}
    try:
        q.quantize_static(
            str(src),
            str(dst),
            _Reader(batches),
            quant_format=q.QuantFormat.QDQ if layout.quant_format == "QDQ" else q.QuantFormat.QOperator,
            per_channel=layout.per_channel,
            activation_type=qtype[layout.activations],
            weight_type=qtype[layout.weights],
            calibrate_method=getattr(q.CalibrationMethod, method),
            nodes_to_exclude=list(exclude),
            extra_options={"ActivationSymmetric": layout.symmetric_activations, "WeightSymmetric": True},
        )
    except (ValueError, RuntimeError, KeyError, IndexError) as exc:
        first = str(exc).splitlines()[0][:400] if str(exc) else type(exc).__name__
        raise ConversionError(f"INT8 quantization ({layout.name}, {method}) failed: {first}") from exc
    from edgeopt.converter.onnx_export import op_counts

    model = onnx.load(str(dst))
    ops = op_counts(model)
    quantized = sum(n for op, n in ops["byType"].items() if op.startswith(("QLinear", "QuantizeLinear", "ConvInteger")))
    if quantized == 0:
        raise ConversionError(f"INT8 quantization ({layout.name}) left no quantized op in the graph")
    return {"layout": layout.as_report(), "method": method, "ops": ops, "fileBytes": dst.stat().st_size}
