"""The OptimizedModel spec, typed, shared by the operator and the converter.

The converter runs on the very YAML a user would ``kubectl apply``; the CRD's
OpenAPI schema (``crds/``) rejects what it can at apply time, and this module
rejects the same things (and a few cross-field rules) when the YAML reaches
``edgeopt convert -f``.  A test keeps the two in agreement, which is why every
field carries its YAML key and its constraints as dataclass metadata.

Errors name the field path: ``spec.tensorrt.precision: 'FP8' is not one of
FP32, FP16, INT8``.  Standard library + PyYAML only: the operator imports this.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgeopt.errors import InputError, SpecError

API_VERSION = "edgeopt.io/v1alpha1"
KIND = "OptimizedModel"

FORMATS = ("SavedModel", "Checkpoint", "FrozenGraph", "Keras")
PRECISIONS = ("FP32", "FP16", "INT8")
BACKENDS = ("tensorflow", "python", "onnxruntime", "tensorrt", "openvino")
#: Backends that take the TF -> ONNX path (``python`` joins them with ``spec.onnx.enabled`` or
#: ``spec.openvino.enabled``); openvino converts the ONNX export on to OpenVINO IR.
ONNX_BACKENDS = ("onnxruntime", "tensorrt", "openvino")
#: OpenVINO's inference precision: ``auto`` is OpenVINO's own choice (bf16 on CPUs with AVX512-BF16 or
#: AMX, f32 elsewhere), ``f32`` forces true FP32.
OPENVINO_PRECISIONS = ("auto", "f32")
DEVICES = ("GPU", "CPU")
CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile")
#: tensorrt.hardwareCompatibility: one plan for every GPU from this architecture on (TensorRT's levels).
HARDWARE_COMPATIBILITY = ("AmperePlus",)
#: tf2onnx 1.17 converts up to opset 18; 17 is what TensorRT 8.6+ and every current ORT run.
DEFAULT_OPSET = 17
DTYPES = ("FP32", "FP16", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "BOOL", "STRING")
DELETION_POLICIES = ("Retain", "Delete")
#: The default transform list (the classic optimize_for_inference set).
DEFAULT_TRANSFORMS = [
    "remove_identity",
    "remove_check_numerics",
    "fold_constants",
    "fold_batch_norms",
    "strip_unused_nodes",
    "sort_by_execution_order",
]
#: Every name spec.optimize.transforms accepts: the defaults, the rest of TF's transform_graph list
#: (``remove_nodes`` removes Identity and CheckNumerics: remove_identity/remove_check_numerics are
#: its halves), and ``quantize_nodes``, accepted by the schema only so it can be refused with a reason.
TRANSFORMS = (
    *DEFAULT_TRANSFORMS,
    "add_default_attributes",
    "remove_nodes",
    "fold_old_batch_norms",
    "fuse_resize_and_conv",
    "quantize_weights",
    "quantize_nodes",
)
QUANTIZE_NODES_MESSAGE = (
    "quantize_nodes (TF1's 8-bit op rewrite to QuantizedConv2D etc.) is obsolete: those ops run only on "
    "CPU kernels TensorFlow no longer optimizes, and TensorRT ignores them; for 8-bit inference set "
    "spec.tensorrt.precision: INT8 with calibration data (or use quantize_weights to shrink the file)"
)
XLA_WITH_TRT_MESSAGE = (
    "xla.jit and tensorrt.enabled are alternatives, not a combination: XLA compiles the whole serving "
    "function for any device, TF-TRT replaces subgraphs with TensorRT engines for NVIDIA GPUs; "
    "set tensorrt.enabled: false to use XLA, or xla.jit: false to use TF-TRT"
)
#: Largest literal spec.source.constants accepts per placeholder (it lands in the CRD and in the graph).
MAX_CONSTANT_ELEMENTS = 1024

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
#: A path segment: no slash, no whitespace or control characters ('.' and '..' are refused apart).
_SEGMENT = r"[^/\s]+"
#: ``file:///ABS/PATH`` or ``pvc://CLAIM[/PATH]``: no empty segment (``pvc://claim//etc`` is not a
#: claim path), an optional trailing slash.  Patterns are full matches, in Python (``re.fullmatch``)
#: as in the CRD (Go's RE2 ``$`` never matches before a trailing newline).
URI_PATTERN = rf"^(file://(/{_SEGMENT})+|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/{_SEGMENT})*)/?$"
REPOSITORY_URI_PATTERN = URI_PATTERN
#: An http(s) URL: scheme, a host, an optional path; no whitespace anywhere.
TRITON_URL_PATTERN = r"^https?://[^/\s]+(/\S*)?$"
#: A Kueue LocalQueue name: an object name that is also a label value (the Job carries it as one).
QUEUE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$"
#: ``graph`` and ``checkpoint``: relative to the source, never absolute, no empty segment.
RELATIVE_PATH_PATTERN = rf"^{_SEGMENT}(/{_SEGMENT})*$"
#: What the CRD's CEL rule refuses on top of the pattern: '.' and '..' segments.
DOT_SEGMENT_RE = re.compile(r"(^|/)\.\.?(/|$)")
MIB = 1024 * 1024

#: Environment variable naming where ``pvc://CLAIM/...`` claims are mounted.
PVC_ROOT_ENV = "EDGEOPT_PVC_ROOT"
DEFAULT_PVC_ROOT = "/mnt/edgeopt/pvc"


def spec_field(
    default: Any = dataclasses.MISSING,
    *,
    key: str | None = None,
    enum: tuple[str, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    pattern: str | None = None,
    factory: Any = dataclasses.MISSING,
    doc: str = "",
) -> Any:
    """A dataclass field that carries its YAML key and its schema constraints."""
    meta = {"key": key, "enum": enum, "minimum": minimum, "maximum": maximum, "pattern": pattern, "doc": doc}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TensorSpec:
    name: str = spec_field(doc="Tensor or node name (graph formats) / signature key (SavedModel).")
    dtype: str = spec_field("FP32", enum=DTYPES, doc="Triton data type.")
    shape: list[int] = spec_field(factory=list, doc="Dimensions; -1 for a variable one (the batch).")


@dataclass
class Source:
    uri: str = spec_field(pattern=URI_PATTERN, doc="file:///ABS/PATH or pvc://CLAIM/PATH.")
    format: str = spec_field(enum=FORMATS, doc="How the model is stored.")
    signature: str = spec_field("serving_default", doc="SavedModel signature to convert.")
    graph: str | None = spec_field(
        None,
        pattern=RELATIVE_PATH_PATTERN,
        doc="Checkpoint: GraphDef (.pb/.pbtxt) or .meta; FrozenGraph: the .pb. Relative to uri.",
    )
    checkpoint: str | None = spec_field(
        None, pattern=RELATIVE_PATH_PATTERN, doc="Checkpoint: checkpoint prefix, relative to uri."
    )
    inputs: list[TensorSpec] = spec_field(factory=list, doc="Graph formats: input placeholders.")
    outputs: list[str] = spec_field(factory=list, doc="Graph formats: output node names.")
    constants: dict[str, Any] | None = spec_field(
        None,
        doc="Graph formats: placeholder name -> value (scalar or small list) frozen in, e.g. keep_prob: 1.0.",
    )


@dataclass
class Optimize:
    transforms: list[str] = spec_field(factory=lambda: list(DEFAULT_TRANSFORMS), doc="Graph transforms, in order.")


@dataclass
class Calibration:
    uri: str | None = spec_field(None, pattern=URI_PATTERN, doc="A .npy (one input) or .npz (by input name).")
    samples: int = spec_field(64, minimum=1, doc="How many samples to feed.")
    synthetic: bool = spec_field(False, doc="Explicitly allow seeded random data when no uri is given.")


@dataclass
class TensorRT:
    enabled: bool = spec_field(True, doc="Convert with TF-TRT (needs TensorRT and a GPU).")
    precision: str | None = spec_field(
        None,
        enum=PRECISIONS,
        doc="Precision of the converted model; unset: FP16 where TensorRT or a GPU runs it, FP32 on CPU.",
    )
    max_batch_size: int = spec_field(8, key="maxBatchSize", minimum=1, doc="Largest batch engines are built for.")
    minimum_segment_size: int = spec_field(3, key="minimumSegmentSize", minimum=1, doc="Smallest TRT segment.")
    max_workspace_size_bytes: int = spec_field(
        1 << 30, key="maxWorkspaceSizeBytes", minimum=MIB, doc="TensorRT builder workspace."
    )
    maximum_cached_engines: int = spec_field(1, key="maximumCachedEngines", minimum=1, doc="Engines per segment.")
    build_engines: bool = spec_field(True, key="buildEngines", doc="Build engines in the Job, not at first request.")
    calibration: Calibration | None = spec_field(None, doc="INT8 calibration data.")
    version_compatible: bool = spec_field(
        False,
        key="versionCompatible",
        doc="backend tensorrt: a plan later TensorRT majors load (10.x plan on an 11.x Triton); embeds the lean "
        "runtime (larger plan, somewhat slower) and Triton must run with --backend-config=tensorrt,"
        "version-compatible=true.",
    )
    hardware_compatibility: str | None = spec_field(
        None,
        key="hardwareCompatibility",
        enum=HARDWARE_COMPATIBILITY,
        doc="backend tensorrt: AmperePlus builds one plan for every GPU from Ampere on (fewer tactics, slower "
        "than a plan for one GPU model); unset: the converter's GPU model only.",
    )


@dataclass
class XLA:
    jit: bool = spec_field(False, doc="Compile the serving function with XLA (jit_compile); not with TF-TRT.")


@dataclass
class Validation:
    samples: int = spec_field(8, minimum=1, doc="Inputs to compare on.")
    rtol: float = spec_field(1e-3, minimum=0, doc="Relative tolerance.")
    atol: float = spec_field(1e-4, minimum=0, doc="Absolute tolerance.")
    seed: int = spec_field(0, minimum=0, doc="Seed for random inputs.")
    fp16_rtol: float = spec_field(0.05, key="fp16Rtol", minimum=0, doc="ONNX FP16: relative tolerance.")
    fp16_atol: float = spec_field(0.1, key="fp16Atol", minimum=0, doc="ONNX FP16: absolute tolerance.")
    int8_rtol: float = spec_field(0.1, key="int8Rtol", minimum=0, doc="ONNX INT8: relative tolerance.")
    int8_atol: float = spec_field(0.1, key="int8Atol", minimum=0, doc="ONNX INT8: absolute tolerance.")
    min_top1_agreement: float = spec_field(
        0.9,
        key="minTop1Agreement",
        minimum=0,
        maximum=1,
        doc="ONNX INT8: share of samples whose top-1 class must match, for [batch, classes] outputs.",
    )
    min_correlation: float = spec_field(
        0.99,
        key="minCorrelation",
        minimum=0,
        maximum=1,
        doc="ONNX path: every sample of a float output not equal within rtol/atol must correlate (Pearson) "
        "at least this much with the original; a constant or all-zero output correlates 0.",
    )


@dataclass
class Onnx:
    enabled: bool = spec_field(
        False, doc="backend python: serve the ONNX export with ONNX Runtime (implied by onnxruntime/tensorrt)."
    )
    opset: int = spec_field(DEFAULT_OPSET, minimum=13, maximum=18, doc="ONNX opset tf2onnx converts to.")
    calibration_method: str = spec_field(
        "MinMax", key="calibrationMethod", enum=CALIBRATION_METHODS, doc="INT8 range calibration."
    )


@dataclass
class OpenVINO:
    enabled: bool = spec_field(
        False, doc="backend python: serve OpenVINO IR with OpenVINO in the Python backend (implied by openvino)."
    )
    inference_precision: str = spec_field(
        "auto",
        key="inferencePrecision",
        enum=OPENVINO_PRECISIONS,
        doc="auto: OpenVINO's choice (bf16 on AVX512-BF16/AMX CPUs, else f32); f32: true FP32.",
    )


@dataclass
class DynamicBatching:
    preferred_batch_sizes: list[int] = spec_field(factory=list, key="preferredBatchSizes", doc="Preferred sizes.")
    max_queue_delay_microseconds: int = spec_field(
        0, key="maxQueueDelayMicroseconds", minimum=0, doc="How long to wait to fill a batch."
    )


@dataclass
class Target:
    repository: str = spec_field(pattern=REPOSITORY_URI_PATTERN, doc="Triton model repository URI.")
    model_name: str | None = spec_field(
        None, key="modelName", pattern=MODEL_NAME_PATTERN, doc="Defaults to metadata.name."
    )
    backend: str = spec_field(
        "python",
        enum=BACKENDS,
        doc="python (Triton >= 25.03) or tensorflow (<= 25.02) serve the SavedModel; "
        "onnxruntime (onnxruntime_onnx) and tensorrt (tensorrt_plan) serve the ONNX export; "
        "openvino serves OpenVINO IR made from it (CPU).",
    )
    device: str | None = spec_field(
        None,
        enum=DEVICES,
        doc="Instance group kind; unset: ONNX path GPU if tensorrt.enabled else CPU, TF paths the converter's.",
    )
    max_batch_size: int = spec_field(8, key="maxBatchSize", minimum=0, doc="Triton max_batch_size; 0 = no batching.")
    dynamic_batching: DynamicBatching | None = spec_field(None, key="dynamicBatching", doc="Omitted = off.")
    versions_to_keep: int = spec_field(3, key="versionsToKeep", minimum=1, doc="Newest versions kept on publish.")
    version: int | None = spec_field(
        None,
        minimum=1,
        doc="Explicit version to publish (default highest + 1); a version in status.history is served again "
        "(rollback, no Job).",
    )
    deletion_policy: str = spec_field(
        "Retain", key="deletionPolicy", enum=DELETION_POLICIES, doc="What deleting the resource does to files."
    )


@dataclass
class Serving:
    triton_url: str | None = spec_field(
        None, key="tritonURL", pattern=TRITON_URL_PATTERN, doc="Triton HTTP endpoint (operator allow-list)."
    )


@dataclass
class Converter:
    image: str | None = spec_field(None, doc="Converter image; the operator supplies the default.")
    resources: dict[str, Any] | None = spec_field(None, doc="Container resources; default one GPU.")
    node_selector: dict[str, str] | None = spec_field(None, key="nodeSelector", doc="Pin to a GPU kind.")
    tolerations: list[dict[str, Any]] | None = spec_field(None, doc="Pod tolerations.")
    runtime_class_name: str | None = spec_field(None, key="runtimeClassName", doc="e.g. nvidia.")
    active_deadline_seconds: int | None = spec_field(None, key="activeDeadlineSeconds", minimum=1, doc="Job deadline.")
    backoff_limit: int | None = spec_field(None, key="backoffLimit", minimum=0, doc="Job retries.")
    ttl_seconds_after_finished: int | None = spec_field(
        None, key="ttlSecondsAfterFinished", minimum=0, doc="Job clean-up."
    )
    queue_name: str | None = spec_field(
        None,
        key="queueName",
        pattern=QUEUE_NAME_PATTERN,
        doc="Kueue LocalQueue that admits the Job; the operator's own conversion slots then step aside.",
    )


@dataclass
class ModelSpec:
    source: Source = spec_field(doc="Where the TensorFlow model is.")
    target: Target = spec_field(doc="Where the optimized model is published.")
    optimize: Optimize = spec_field(factory=Optimize, doc="Graph optimization.")
    tensorrt: TensorRT = spec_field(factory=TensorRT, doc="TF-TRT conversion.")
    onnx: Onnx = spec_field(factory=Onnx, doc="The TF -> ONNX path (target.backend onnxruntime / tensorrt).")
    openvino: OpenVINO = spec_field(factory=OpenVINO, doc="OpenVINO IR from the ONNX export (target.backend openvino).")
    xla: XLA = spec_field(factory=XLA, doc="XLA JIT compilation of the serving function.")
    validation: Validation = spec_field(factory=Validation, doc="Output comparison.")
    serving: Serving = spec_field(factory=Serving, doc="Triton to load the model into.")
    converter: Converter = spec_field(factory=Converter, doc="Converter Job settings.")


@dataclass
class OptimizedModel:
    name: str
    spec: ModelSpec
    namespace: str | None = None

    @property
    def model_name(self) -> str:
        return self.spec.target.model_name or self.name


# --------------------------------------------------------------------------- parsing


def yaml_key(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("key") or f.name


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _convert(value: Any, tp: Any, path: str, meta: typing.Mapping[str, Any]) -> Any:
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise SpecError(f"{path}: is required")
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise SpecError(f"{path}: must be a mapping, got {type(value).__name__}")
        return _parse_dataclass(tp, value, path)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise SpecError(f"{path}: must be a list, got {type(value).__name__}")
        return [_convert(v, item_tp, f"{path}[{i}]", meta) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{path}: must be a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{path}: must be a number, got {value!r}")
        value = float(value)
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{path}: must be an integer, got {value!r}")
    elif tp is bool:
        if not isinstance(value, bool):
            raise SpecError(f"{path}: must be true or false, got {value!r}")
    elif tp is str:
        if not isinstance(value, str):
            raise SpecError(f"{path}: must be a string, got {value!r}")
    enum = meta.get("enum")
    if enum and value not in enum:
        raise SpecError(f"{path}: {value!r} is not one of {', '.join(enum)}")
    if meta.get("minimum") is not None and value < meta["minimum"]:
        raise SpecError(f"{path}: must be >= {meta['minimum']:g}, got {value}")
    if meta.get("maximum") is not None and value > meta["maximum"]:
        raise SpecError(f"{path}: must be <= {meta['maximum']:g}, got {value}")
    if meta.get("pattern") and not re.fullmatch(meta["pattern"], value):
        raise SpecError(f"{path}: {value!r} does not match {meta['pattern']}")
    return value


@functools.cache
def _shape(cls: Any) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """A spec dataclass's resolved type hints and its fields by YAML key, worked out once per class.

    ``typing.get_type_hints`` evaluates every annotation string each call: it was the largest share of
    the operator's CPU per event (the spec is parsed on every watch event), measured with py-spy.
    """
    return typing.get_type_hints(cls), {yaml_key(f): f for f in dataclasses.fields(cls)}


def _parse_dataclass(cls: Any, data: dict[str, Any], path: str) -> Any:
    hints, fields = _shape(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SpecError(f"{path}.{unknown[0]}: unknown field; known fields are {', '.join(sorted(fields))}")
    kwargs: dict[str, Any] = {}
    for key, f in fields.items():
        if key in data:
            kwargs[f.name] = _convert(data[key], hints[f.name], f"{path}.{key}", f.metadata)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SpecError(f"{path}.{key}: is required")
    return cls(**kwargs)


def _check_uri(uri: str, path: str) -> None:
    rest = uri.split("://", 1)[1]
    if DOT_SEGMENT_RE.search(rest):
        raise SpecError(f"{path}: {uri!r} must not contain '.' or '..' segments")


def _check_relative(value: str | None, path: str) -> None:
    if value is not None and DOT_SEGMENT_RE.search(value):
        raise SpecError(
            f"{path}: {value!r} must not contain '.' or '..' segments; name the file relative to spec.source.uri"
        )


def _validate(spec: ModelSpec) -> None:
    """Rules that span fields (the CRD expresses these as CEL rules)."""
    src = spec.source
    _check_uri(src.uri, "spec.source.uri")
    _check_uri(spec.target.repository, "spec.target.repository")
    _check_relative(src.graph, "spec.source.graph")
    _check_relative(src.checkpoint, "spec.source.checkpoint")
    if src.format in ("Checkpoint", "FrozenGraph"):
        missing = [k for k in ("graph", "inputs", "outputs") if not getattr(src, k)]
        if src.format == "Checkpoint" and not src.checkpoint:
            missing.insert(1, "checkpoint")
        if missing:
            raise SpecError(
                f"spec.source: format {src.format} needs {', '.join(missing)} "
                "(the graph file, the checkpoint prefix, input placeholders and output node names)"
            )
    for i, t in enumerate(src.inputs):
        if any(d < -1 or d == 0 for d in t.shape):
            raise SpecError(f"spec.source.inputs[{i}].shape: dimensions must be positive or -1, got {t.shape}")
    for i, name in enumerate(spec.optimize.transforms):
        if name not in TRANSFORMS:
            raise SpecError(
                f"spec.optimize.transforms[{i}]: unknown transform {name!r}; known: {', '.join(TRANSFORMS)}"
            )
        if name == "quantize_nodes":
            raise SpecError(f"spec.optimize.transforms[{i}]: {QUANTIZE_NODES_MESSAGE}")
    _check_constants(src)
    trt = spec.tensorrt
    _validate_onnx(spec)
    if spec.xla.jit and trt.enabled:
        raise SpecError(f"spec.xla.jit: {XLA_WITH_TRT_MESSAGE}")
    if spec.xla.jit and uses_onnx(spec):
        raise SpecError(
            "spec.xla.jit: XLA compiles the TensorFlow SavedModel's serving function, but target.backend "
            f"{spec.target.backend!r} serves the ONNX export; use backend python or tensorflow for XLA"
        )
    if (trt.enabled or uses_onnx(spec)) and trt.precision == "INT8":
        cal = trt.calibration
        if cal is None or (not cal.uri and not cal.synthetic):
            raise SpecError(
                "spec.tensorrt.calibration: INT8 needs calibration data: set calibration.uri to a .npy/.npz "
                "file, or opt in to random data with calibration.synthetic: true"
            )
    if trt.calibration and trt.calibration.uri:
        _check_uri(trt.calibration.uri, "spec.tensorrt.calibration.uri")
    db = spec.target.dynamic_batching
    if db and spec.target.max_batch_size == 0:
        raise SpecError("spec.target.dynamicBatching: needs target.maxBatchSize >= 1")
    if db:
        for s in db.preferred_batch_sizes:
            if s < 1 or s > spec.target.max_batch_size:
                raise SpecError(
                    f"spec.target.dynamicBatching.preferredBatchSizes: {s} must be within 1..maxBatchSize "
                    f"({spec.target.max_batch_size})"
                )


def uses_onnx(spec: ModelSpec) -> bool:
    """Whether the model takes the TF → ONNX path instead of the SavedModel (TF-TRT) one."""
    python_flavour = spec.target.backend == "python" and (spec.onnx.enabled or spec.openvino.enabled)
    return spec.target.backend in ONNX_BACKENDS or python_flavour


def uses_openvino(spec: ModelSpec) -> bool:
    """Whether the artefact is OpenVINO IR (backend openvino, or python with ``openvino.enabled``)."""
    return spec.target.backend == "openvino" or (spec.target.backend == "python" and spec.openvino.enabled)


def default_precision(spec: ModelSpec) -> str:
    """``tensorrt.precision`` when unset: FP16 where TensorRT or a GPU runs the model, FP32 on CPU.

    On CPU, ONNX Runtime computes most FP16 ops in FP32 through casts (slower than FP32), and the
    TF path without TF-TRT converts no precision at all.
    """
    if uses_onnx(spec):
        return "FP16" if spec.target.backend == "tensorrt" or onnx_device(spec) == "GPU" else "FP32"
    return "FP16" if spec.tensorrt.enabled else "FP32"


def precision_of(spec: ModelSpec) -> str:
    """The precision the model is converted to: ``tensorrt.precision``, else ``default_precision``."""
    return spec.tensorrt.precision or default_precision(spec)


def onnx_device(spec: ModelSpec) -> str:
    """Where the ONNX path's model runs: ``target.device``, else GPU exactly when the TensorRT accelerator is on.

    Decided from the spec alone (not from the converter's hardware), so the INT8
    layout and the Triton config always agree, whichever node converts.
    """
    return spec.target.device or ("GPU" if spec.tensorrt.enabled else "CPU")


def _validate_openvino(spec: ModelSpec) -> None:
    target = spec.target
    if spec.openvino.enabled and target.backend not in ("python", "openvino"):
        raise SpecError(
            f"spec.openvino.enabled: backend {target.backend} does not serve OpenVINO IR; use target.backend "
            "openvino (Triton's OpenVINO backend) or python (OpenVINO in the Python backend)"
        )
    if target.backend == "python" and spec.openvino.enabled and spec.onnx.enabled:
        raise SpecError(
            "spec.openvino.enabled: the python backend serves either the ONNX export with ONNX Runtime "
            "(onnx.enabled) or OpenVINO IR (openvino.enabled), not both; set one of them"
        )
    if not uses_openvino(spec):
        return
    if target.device == "GPU":
        raise SpecError(
            "spec.target.device: edgeopt's OpenVINO IR runs on the CPU (OpenVINO's CPU plugin); use device CPU, "
            "or target.backend onnxruntime/tensorrt for GPUs"
        )
    if target.backend == "openvino" and spec.openvino.inference_precision == "f32":
        raise SpecError(
            "spec.openvino.inferencePrecision: Triton's openvino backend has no setting for the inference "
            "precision (it runs OpenVINO's default, bf16 on AVX512-BF16/AMX CPUs); for true FP32 use "
            "target.backend python with openvino.enabled: true"
        )
    if spec.tensorrt.enabled:
        raise SpecError(
            "spec.tensorrt.enabled: OpenVINO runs on the CPU without TensorRT; set tensorrt.enabled: false "
            "(tensorrt.precision still picks FP32/FP16/INT8 for the OpenVINO model)"
        )


def _validate_onnx(spec: ModelSpec) -> None:
    target, trt = spec.target, spec.tensorrt
    _validate_openvino(spec)
    if spec.onnx.enabled and target.backend == "tensorflow":
        raise SpecError(
            "spec.onnx.enabled: the tensorflow backend serves SavedModels; use target.backend onnxruntime, "
            "tensorrt or python for the ONNX export"
        )
    if target.backend == "tensorrt" and target.device == "CPU":
        raise SpecError(
            "spec.target.device: backend tensorrt (a TensorRT plan) runs only on GPU; use backend onnxruntime"
        )
    if target.backend in ("onnxruntime", "python") and uses_onnx(spec) and target.device == "CPU" and trt.enabled:
        raise SpecError(
            "spec.tensorrt.enabled: the TensorRT accelerator exists only on GPU; for device CPU set "
            "tensorrt.enabled: false (tensorrt.precision still picks FP32/FP16/INT8 for the ONNX model)"
        )
    if (trt.version_compatible or trt.hardware_compatibility) and target.backend != "tensorrt":
        raise SpecError(
            "spec.tensorrt.versionCompatible/hardwareCompatibility: they shape a TensorRT plan, which only "
            "target.backend tensorrt builds; remove them or use backend tensorrt"
        )
    if target.backend == "python" and spec.onnx.enabled and trt.enabled:
        raise SpecError(
            "spec.tensorrt.enabled: the ONNX flavour of the python backend runs ONNX Runtime without TensorRT; "
            "set tensorrt.enabled: false, or use target.backend onnxruntime for the TensorRT accelerator"
        )


def _literal_size(value: Any, path: str) -> int:
    """Elements in a scalar or (nested, rectangular-or-not) list literal; anything else is a SpecError."""
    if isinstance(value, (bool, int, float, str)):
        return 1
    if isinstance(value, list) and value:
        return sum(_literal_size(v, f"{path}[{i}]") for i, v in enumerate(value))
    raise SpecError(f"{path}: must be a number, true/false, a string or a non-empty list of them, got {value!r}")


def _check_constants(src: Source) -> None:
    if not src.constants:
        return
    if src.format not in ("Checkpoint", "FrozenGraph"):
        raise SpecError(
            "spec.source.constants: binds graph placeholders, so it needs format Checkpoint or FrozenGraph "
            f"(a {src.format} signature has no training-only placeholders to bind)"
        )
    inputs = {t.name.split(":")[0] for t in src.inputs}
    for name, value in src.constants.items():
        path = f"spec.source.constants.{name}"
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_.][A-Za-z0-9_./-]*$", name):
            raise SpecError(f"spec.source.constants: {name!r} is not a TensorFlow node name")
        if name in inputs:
            raise SpecError(f"{path}: {name!r} is also in spec.source.inputs; a placeholder is one or the other")
        if _literal_size(value, path) > MAX_CONSTANT_ELEMENTS:
            raise SpecError(f"{path}: at most {MAX_CONSTANT_ELEMENTS} elements (a small literal, not a tensor)")


def parse_spec(data: Any) -> ModelSpec:
    if not isinstance(data, dict):
        raise SpecError("spec: must be a mapping")
    spec: ModelSpec = _parse_dataclass(ModelSpec, data, "spec")
    _validate(spec)
    if spec.tensorrt.precision is None:
        spec.tensorrt.precision = default_precision(spec)
    return spec


def parse_manifest(doc: Any) -> OptimizedModel:
    if not isinstance(doc, dict):
        raise SpecError("manifest: must be a YAML mapping with apiVersion, kind, metadata and spec")
    if doc.get("apiVersion") != API_VERSION:
        raise SpecError(f"apiVersion: {doc.get('apiVersion')!r} is not {API_VERSION}")
    if doc.get("kind") != KIND:
        raise SpecError(f"kind: {doc.get('kind')!r} is not {KIND}")
    meta = doc.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name):
        raise SpecError(f"metadata.name: {name!r} is not a valid Kubernetes name")
    if "spec" not in doc:
        raise SpecError("spec: is required")
    model = OptimizedModel(name=name, namespace=meta.get("namespace"), spec=parse_spec(doc["spec"]))
    if not re.fullmatch(MODEL_NAME_PATTERN, model.model_name):
        raise SpecError(
            f"spec.target.modelName: defaults to metadata.name {name!r}, which does not match "
            f"{MODEL_NAME_PATTERN}; set spec.target.modelName"
        )
    return model


def load_manifest(path: str | os.PathLike[str]) -> OptimizedModel:
    """Read the OptimizedModel from a YAML file (the first such document in it)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SpecError(f"{p}: cannot read the manifest ({exc.strerror})") from exc
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise SpecError(f"{p}: not valid YAML: {exc}") from exc
    for d in docs:
        if isinstance(d, dict) and d.get("kind") == KIND:
            return parse_manifest(d)
    raise SpecError(f"{p}: no document with kind: {KIND} found")


# --------------------------------------------------------------------------- URIs


def pvc_root() -> Path:
    return Path(os.environ.get(PVC_ROOT_ENV) or DEFAULT_PVC_ROOT)


def resolve_uri(uri: str, *, base: Path | None = None, contain: bool = True) -> Path:
    """Turn ``file:///abs`` or ``pvc://claim/path`` into a local path.

    ``pvc://`` claims are mounted at ``$EDGEOPT_PVC_ROOT/<claim>``; the operator
    mounts them there in the Job and the dev node agent does the same.  The
    result, symlinks resolved, must stay inside the claim's mount: a symlink
    on the claim cannot point the converter at the rest of the container.
    """
    if not re.fullmatch(URI_PATTERN, uri) or DOT_SEGMENT_RE.search(uri.split("://", 1)[-1]):
        if uri.startswith("file://") and not uri.startswith("file:///"):
            raise SpecError(f"{uri!r}: file:// URIs must be absolute (file:///abs/path)")
        if not uri.startswith(("file://", "pvc://")):
            raise SpecError(f"{uri!r}: unsupported URI scheme; use file:///ABS/PATH or pvc://CLAIM/PATH")
        raise SpecError(
            f"{uri!r}: not a valid model URI: use file:///ABS/PATH or pvc://CLAIM/PATH with no empty, "
            "'.' or '..' segments"
        )
    if uri.startswith("file://"):
        return Path(uri[len("file://") :].rstrip("/") or "/")
    claim, _, sub = uri[len("pvc://") :].rstrip("/").partition("/")
    root = (base or pvc_root()) / claim
    p = root / sub if sub else root
    if contain:
        contained(root, p, uri)
    return p


def contained(root: Path, path: Path, what: str) -> Path:
    """``path`` with symlinks resolved, which must lie inside ``root`` (resolved too); else an InputError."""
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and not real.is_relative_to(real_root):
        raise InputError(
            f"{what}: {path} resolves to {real}, outside {real_root}; a model may only use files inside "
            "its own directory (replace the symlink by the file itself)"
        )
    return real


def pvc_claim(uri: str | None) -> str | None:
    """The claim name of a ``pvc://`` URI, else None."""
    if uri and uri.startswith("pvc://"):
        return uri[len("pvc://") :].split("/", 1)[0]
    return None


def walk_fields(cls: Any, prefix: str = "spec") -> typing.Iterator[tuple[str, dataclasses.Field[Any], Any]]:
    """Yield (path, field, type) for every field, recursing into nested specs (for the CRD test)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, _ = _unwrap_optional(hints[f.name])
        path = f"{prefix}.{yaml_key(f)}"
        yield path, f, tp
        if dataclasses.is_dataclass(tp):
            yield from walk_fields(tp, path)
        elif typing.get_origin(tp) is list:
            (item,) = typing.get_args(tp)
            if dataclasses.is_dataclass(item):
                yield from walk_fields(item, path + "[]")
