"""ONNX stage — TensorRT plan: build ``model.plan`` from ``model.onnx`` with TensorRT's Python API.

For ``target.backend: tensorrt`` Triton's ``tensorrt_plan`` backend loads a
serialized engine, which is specific to the GPU model and TensorRT version
it was built with; so it is built in the converter Job, on the kind of node
that serves (``converter.nodeSelector``), and the report records both.

One optimization profile spans batch 1 to ``target.maxBatchSize`` (opt at
the max), so every batch Triton forms fits the engine.  INT8 uses the Q/DQ
model from ``onnx_quantize`` (explicit quantization: no calibrator, which
TensorRT 11 removed); FP16 sets the FP16 flag and lets TensorRT choose per
layer.  Without TensorRT's Python bindings the spec fails at once with
TensorRTUnavailableError (exit 5), as TF-TRT does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeopt.artifact import TensorInfo
from edgeopt.errors import ConversionError, TensorRTUnavailableError

TRT_PLAN_UNAVAILABLE_HINT = (
    "target.backend tensorrt builds a TensorRT plan, but TensorRT's Python bindings (import tensorrt) are not "
    "installed here: run the GPU converter image, or use target.backend onnxruntime (TensorRT accelerator on "
    "GPU, or device CPU without TensorRT)"
)


def _tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return trt


def check_tensorrt() -> str:
    """TensorRT's version, or TensorRTUnavailableError before any work is done."""
    trt = _tensorrt()
    if trt is None:
        raise TensorRTUnavailableError(TRT_PLAN_UNAVAILABLE_HINT)
    return str(trt.__version__)


def profile_shapes(
    inputs: Sequence[TensorInfo], max_batch_size: int
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) per input: batch 1..max, every other dim fixed (else the plan cannot be built)."""
    unknown = [t.name for t in inputs if any(d < 0 for d in t.shape[1:])]
    if unknown:
        raise ConversionError(
            f"cannot build a TensorRT plan: input(s) {', '.join(unknown)} have unknown non-batch dimensions; "
            "declare full shapes in spec.source.inputs (only the first dimension may be -1)"
        )
    shapes = {}
    for t in inputs:
        if not t.shape or t.shape[0] != -1:
            fixed = tuple(t.shape)
            shapes[t.name] = (fixed, fixed, fixed)
            continue
        rest = tuple(t.shape[1:])
        top = max(1, max_batch_size)
        shapes[t.name] = ((1, *rest), (top, *rest), (top, *rest))
    return shapes


def _parse(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> Any:
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implied (and deprecated) from TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ConversionError(f"TensorRT's ONNX parser rejects {onnx_path.name}: {'; '.join(errors)[:600]}")
    return network, parser


def build_plan(
    onnx_path: Path,
    plan_path: Path,
    *,
    inputs: Sequence[TensorInfo],
    precision: str,
    max_batch_size: int,
    workspace_bytes: int,
) -> dict[str, Any]:
    """Serialize a TensorRT engine for ``onnx_path`` to ``plan_path``; return what the report records."""
    trt = _tensorrt()
    if trt is None:
        raise TensorRTUnavailableError(TRT_PLAN_UNAVAILABLE_HINT)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "FP16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "INT8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit: the Q/DQ scales come from the graph
        config.set_flag(trt.BuilderFlag.FP16)  # layers left unquantized may still use FP16
    profile = builder.create_optimization_profile()
    shapes = profile_shapes(inputs, max_batch_size)
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConversionError(
            "TensorRT could not build the engine (see the TensorRT log above): try precision FP32/FP16, a larger "
            "tensorrt.maxWorkspaceSizeBytes, or target.backend onnxruntime"
        )
    plan_path.write_bytes(bytes(serialized))
    return {
        "tensorrt": str(trt.__version__),
        "gpu": _gpu_name(),
        "precision": precision,
        "profile": {k: {"min": list(v[0]), "opt": list(v[1]), "max": list(v[2])} for k, v in shapes.items()},
        "planBytes": plan_path.stat().st_size,
        "layers": int(network.num_layers),
    }


def _gpu_name() -> str | None:
    """The GPU the plan was built on (plans only run on the same GPU model and TensorRT version)."""
    try:
        from cuda import cudart  # cuda-python ships in the NGC containers next to TensorRT

        _err, props = cudart.cudaGetDeviceProperties(0)
        name = props.name
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # no cuda-python, no device: the report says unknown rather than failing a built plan
        return None
