"""ONNX stage — TensorRT plan: build ``model.plan`` from ``model.onnx`` with TensorRT's Python API.

For ``target.backend: tensorrt`` Triton's ``tensorrt_plan`` backend loads a
serialized engine, which is specific to the GPU model and TensorRT version
it was built with; so it is built in the converter Job, on the kind of node
that serves (``converter.nodeSelector``), and the report records both.

The network is **strongly typed** (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``)
and no precision builder flag is set: TensorRT 11 removed weak typing (the
FP16/INT8 flags, implicit calibration, precision constraints), so precision
lives in the ONNX graph — FP16 tensors from ``onnx_fp16``, Q/DQ pairs from
``onnx_quantize`` (S8S8) — and the same code builds on TensorRT 10.x and 11.x.
``graph_precision`` checks the graph carries the precision the spec asks for.

One optimization profile spans batch 1 to ``target.maxBatchSize`` (opt at
the max), so every batch Triton forms fits the engine.  Optional, each with
its cost (``plan_flags``): ``tensorrt.versionCompatible`` (a plan a later
TensorRT major loads; embeds the lean runtime, a larger plan, somewhat slower,
and Triton must trust it: ``--backend-config=tensorrt,version-compatible=true``)
and ``tensorrt.hardwareCompatibility: AmperePlus`` (one plan for every GPU from
Ampere on; fewer tactics, slower than a plan for one GPU model).  Without
TensorRT's Python bindings the spec fails at once with
TensorRTUnavailableError (exit 5), as TF-TRT does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


#: TensorRT majors this builder is written for (strongly typed networks, no precision flags).
SUPPORTED_MAJORS = (10, 11)
#: ``tensorrt.hardwareCompatibility`` value → TensorRT's HardwareCompatibilityLevel member.
HARDWARE_LEVELS = {"AmperePlus": "AMPERE_PLUS"}


@dataclass(frozen=True)
class PlanFlags:
    """How the network and builder are configured: names of TensorRT enum members (the report lists them)."""

    network: tuple[str, ...]
    builder: tuple[str, ...]
    hardware_compatibility: str | None = None
    cleared: tuple[str, ...] = ()

    def as_report(self) -> dict[str, Any]:
        return {
            "network": list(self.network),
            "builder": list(self.builder),
            "cleared": list(self.cleared),
            "hardwareCompatibility": self.hardware_compatibility,
        }


def plan_flags(
    *, version_compatible: bool, hardware_compatibility: str | None, fp32_compute: bool = False
) -> PlanFlags:
    """Strongly typed, never a precision flag; version/hardware compatibility only when the spec asks.

    VERSION_COMPATIBLE keeps the lean runtime in the plan (no EXCLUDE_LEAN_RUNTIME) so a later TensorRT
    loads it without a matching runtime install.  ``fp32_compute`` (an FP16 graph that kept FP32
    convolutions, ``onnx_fp16``'s prefix) clears TF32 (on by default): those nodes are FP32 because FP16's
    10-bit mantissa was too coarse there, and TF32 would round their inputs to it.  TF32 is a math mode,
    not a storage type, so strong typing still honours it.
    """
    if hardware_compatibility is not None and hardware_compatibility not in HARDWARE_LEVELS:
        raise ConversionError(
            f"tensorrt.hardwareCompatibility {hardware_compatibility!r} is unknown; use "
            f"{' or '.join(HARDWARE_LEVELS)} or leave it unset"
        )
    builder = ("VERSION_COMPATIBLE",) if version_compatible else ()
    level = HARDWARE_LEVELS[hardware_compatibility] if hardware_compatibility else None
    cleared = ("TF32",) if fp32_compute else ()
    return PlanFlags(network=("STRONGLY_TYPED",), builder=builder, hardware_compatibility=level, cleared=cleared)


def tensorrt_major(version: str) -> int:
    """The major of a TensorRT version string; a major this builder was not written for fails clearly."""
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise ConversionError(f"cannot read TensorRT's version {version!r}") from None
    if major not in SUPPORTED_MAJORS:
        raise ConversionError(
            f"TensorRT {version} is not supported for plans: edgeopt builds strongly typed networks for TensorRT "
            f"{' and '.join(f'{m}.x' for m in SUPPORTED_MAJORS)}; use a converter image with one of them"
        )
    return major


def graph_precision(model: Any) -> str:
    """What a strongly typed build of this ONNX graph computes in: INT8 (Q/DQ), FP16 (FP16 tensors), else FP32."""
    from edgeopt.converter.onnx_fp16 import node_precisions

    ops = {n.op_type for n in model.graph.node}
    if {"QuantizeLinear", "DequantizeLinear"} <= ops:
        return "INT8"
    return "FP16" if node_precisions(model)["fp16"] else "FP32"


def fp32_compute_nodes(onnx_path: Path) -> int:
    """Conv/MatMul/Gemm nodes of the graph that compute in FP32 (an FP16 graph's FP32 prefix)."""
    import onnx

    from edgeopt.converter.onnx_fp16 import COMPUTE_OPS, node_kinds

    return sum(1 for op, kind in node_kinds(onnx.load(str(onnx_path))) if op in COMPUTE_OPS and kind == "fp32")


def check_graph_precision(onnx_path: Path, precision: str) -> None:
    """A strongly typed plan computes in the graph's types: an FP32 graph for precision FP16 would be FP32."""
    import onnx

    found = graph_precision(onnx.load(str(onnx_path)))
    if found != precision:
        raise ConversionError(
            f"tensorrt.precision is {precision} but the ONNX graph for the plan computes in {found}: TensorRT builds "
            "strongly typed networks (no precision flags), so the precision must be in the graph; this is a "
            "converter bug, report it"
        )


def _parse(trt: Any, builder: Any, logger: Any, onnx_path: Path, flags: PlanFlags) -> Any:
    bits = 0
    for name in flags.network:
        bits |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(bits)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ConversionError(f"TensorRT's ONNX parser rejects {onnx_path.name}: {'; '.join(errors)[:600]}")
    return network, parser


def _configure(trt: Any, builder: Any, flags: PlanFlags, workspace_bytes: int) -> Any:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    for name in flags.builder:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in flags.cleared:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    if flags.hardware_compatibility:
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, flags.hardware_compatibility)
    return config


def build_plan(
    onnx_path: Path,
    plan_path: Path,
    *,
    inputs: Sequence[TensorInfo],
    precision: str,
    max_batch_size: int,
    workspace_bytes: int,
    version_compatible: bool = False,
    hardware_compatibility: str | None = None,
) -> dict[str, Any]:
    """Serialize a strongly typed TensorRT engine for ``onnx_path`` to ``plan_path``; return what the report records."""
    trt = _tensorrt()
    if trt is None:
        raise TensorRTUnavailableError(TRT_PLAN_UNAVAILABLE_HINT)
    tensorrt_major(str(trt.__version__))
    check_graph_precision(onnx_path, precision)
    flags = plan_flags(
        version_compatible=version_compatible,
        hardware_compatibility=hardware_compatibility,
        fp32_compute=precision == "FP16" and fp32_compute_nodes(onnx_path) > 0,
    )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, onnx_path, flags)
    config = _configure(trt, builder, flags, workspace_bytes)
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
        "precisionBy": "onnx graph (strongly typed)",
        "flags": flags.as_report(),
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
