"""config.pbtxt for a published model, built from the artifact's real signature.

Triton decides everything about serving from this file: tensor names, dtypes,
whether it may batch, where instances run, which versions it serves, and what
it runs before it reports a version ready (warmup).  We write the protobuf text
format by hand rather than depending on Triton's protobuf module: the converter
image must not pull protobuf >= 6 (TensorFlow 2.17 needs < 5), and the file is
small and regular.  The real Triton parser accepts every config we generate
(``tests/triton/test_configs_load.py``).

Pure functions; no TensorFlow, no Triton.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from edgeopt.artifact import Artifact, TensorInfo
from edgeopt.errors import PublishError
from edgeopt.spec import OptimizedModel, onnx_device, precision_of

#: Triton model config ``data_type`` for each Triton dtype the spec and artifact use.
TRITON_TYPES: dict[str, str] = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32",
    "FP64": "TYPE_FP64",
    "STRING": "TYPE_STRING",
    "BYTES": "TYPE_STRING",
    "BF16": "TYPE_BF16",
}

#: What the python-backend model.py reads from ``parameters``.
PARAM_SIGNATURE_KEY = "signature_key"
PARAM_SAVEDMODEL_DIR = "savedmodel_dir"
PARAM_INPUT_SHAPES = "signature_input_shapes"
SAVEDMODEL_DIRNAME = "model.savedmodel"
#: The ONNX flavour of the python backend: model.py runs this file with ONNX Runtime.
PARAM_MODEL_FORMAT = "model_format"
PARAM_ONNX_FILE = "onnx_file"
ONNX_FILENAME = "model.onnx"
PLAN_FILENAME = "model.plan"
#: OpenVINO IR: the graph (model.xml, Triton's openvino backend's default file name) and its weights beside it.
OPENVINO_FILENAME = "model.xml"
OPENVINO_WEIGHTS_FILENAME = "model.bin"
#: The OpenVINO flavour of the python backend: model.py runs this file with OpenVINO (see _edgeopt_openvino).
PARAM_OPENVINO_FILE = "openvino_file"
PARAM_INFERENCE_PRECISION = "inference_precision"
PARAM_STATIC_BATCHES = "static_batch_sizes"
#: Triton platform per backend that has one (python is a backend, not a platform).
PLATFORMS = {"tensorflow": "tensorflow_savedmodel", "onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}
#: Where ONNX Runtime's TensorRT EP keeps engines and timing caches inside the Triton container.  The
#: repository is mounted read-only; the chart mounts ``triton.engineCache`` here (a claim per GPU kind that
#: survives a restart, else an emptyDir), and a Triton without that mount still has a writable /tmp.
#: ORT names each engine by a hash of the model and the GPU's compute capability, so versions and GPU
#: kinds never share one; the timing cache (per compute capability) is shared by all models.
TRT_CACHE_ROOT = "/tmp/edgeopt-trt-cache"
#: The CUDA EP options the onnxruntime backend gets on GPU (fallback under TensorRT, or the EP itself),
#: through ``gpu_execution_accelerator { name: "cuda" }`` (onnxruntime_backend passes every key to ORT's
#: CUDA provider options).  cuDNN's exhaustive algorithm search, which Triton applies by default only when
#: a config has no ``parameters``.  Measured on an H200 (ORT 1.31.1, ``bench/gpu_ort.py``; bench/README.md):
#: ``prefer_nhwc`` ran FP32/FP16 MobileNetV2 b64 compute-only in 4.39 / 3.63 ms against 5.26 / 4.51 NCHW
#: and ResNet50 in 7.78 / 5.39 against 9.46 / 7.23, but the S8S8 Q/DQ INT8 graphs 2.5x slower (28.1 vs
#: 11.1 ms), so INT8 keeps NCHW (``NHWC_OPTIONS`` go only with FP32/FP16).  ``use_tf32`` stays ORT's default
#: for FP32 graphs (on, as TensorFlow's on Ampere and later): off cost 21% at b64 for 1e-2 → 5e-6 relative
#: error.  An FP16 graph that kept an FP32 prefix (``onnx_fp16``: its first convolutions, where FP16's
#: rounding is amplified most) turns TF32 off and keeps NCHW (``PREFIX_OPTIONS``): TF32 rounds a conv's
#: inputs to FP16's 10-bit mantissa, which undoes the prefix (ResNet50 b64 max abs 0.118 with TF32, 0.053
#: without), and NHWC ran that mixed graph at 13.1 ms against 9.0 NCHW.  A pure FP16 graph keeps NHWC and
#: ORT's TF32 default (turning it off there chose slower algorithms: 6.0 vs 5.4 ms).  CUDA graphs never:
#: Triton binds each request's own buffers, and a captured graph needs fixed ones.
CUDA_EP_OPTIONS: tuple[tuple[str, str], ...] = (("cudnn_conv_algo_search", "EXHAUSTIVE"),)
NHWC_OPTIONS: tuple[tuple[str, str], ...] = (("prefer_nhwc", "1"),)
PREFIX_OPTIONS: tuple[tuple[str, str], ...] = (("use_tf32", "0"),)


@dataclass(frozen=True)
class TensorConfig:
    """One input or output as Triton sees it (dims without the batch dim when batching)."""

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ModelConfig:
    """Everything config.pbtxt says; ``render()`` turns it into protobuf text."""

    name: str
    backend: str  # python | tensorflow | onnxruntime | tensorrt (spec.target.backend)
    max_batch_size: int
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    instance_kind: str  # KIND_GPU | KIND_CPU
    instance_count: int = 1
    versions_to_keep: int = 3
    #: The versions Triton loads (``version_policy: specific``); None = the newest ``versions_to_keep``.
    #: The publisher sets it to the new version plus the served ones that share this config, so a
    #: config change (inputs, dtypes, backend) never applies to a version built for another config.
    versions: tuple[int, ...] | None = None
    preferred_batch_sizes: tuple[int, ...] | None = None  # None = no dynamic batching
    max_queue_delay_microseconds: int = 0
    warmup: bool = True
    online_trt_precision: str | None = None  # tensorflow backend only
    online_trt_workspace_bytes: int | None = None
    online_trt_minimum_segment_size: int | None = None
    online_trt_max_cached_engines: int | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    #: onnxruntime backend on GPU: the TensorRT execution accelerator's parameters (key, value).
    trt_accelerator: tuple[tuple[str, str], ...] = ()
    #: onnxruntime backend on GPU: the CUDA execution provider's options (key, value).
    cuda_accelerator: tuple[tuple[str, str], ...] = ()

    def render(self) -> str:
        return render_config(self)


def triton_type(dtype: str) -> str:
    try:
        return TRITON_TYPES[dtype.upper()]
    except KeyError:
        raise PublishError(f"dtype {dtype!r} has no Triton equivalent; known: {', '.join(TRITON_TYPES)}") from None


def _batchable(tensors: Sequence[TensorInfo]) -> bool:
    """Triton batching needs every tensor to carry a variable leading (batch) dim."""
    return all(len(t.shape) >= 1 and t.shape[0] == -1 for t in tensors)


def triton_max_batch(wanted: int, tensors: Sequence[TensorInfo]) -> int:
    """The config's max_batch_size: the spec's wish when every tensor has a variable leading dim, else 0."""
    return wanted if wanted > 0 and _batchable(tensors) else 0


def _tensor_config(t: TensorInfo, batched: bool) -> TensorConfig:
    shape = list(t.shape[1:] if batched else t.shape)
    if any(d < -1 or d == 0 for d in shape):
        raise PublishError(f"tensor {t.name!r}: shape {t.shape} has a dimension that is neither positive nor -1")
    if not shape:
        # Triton needs at least one dim and rejects an empty reshape on a non-batching model
        # ("scalar tensors are not supported"): a scalar travels as [1]; model.py restores the rank.
        return TensorConfig(t.name, triton_type(t.dtype), (1,))
    return TensorConfig(t.name, triton_type(t.dtype), tuple(shape))


def _check_scalars(artifact: Artifact, backend: str) -> None:
    """Rank-0 tensors travel as dims [1]; only the python backend's model.py restores the rank.

    Triton 2.51 refuses the other layout one might try, ``dims: [1]`` with
    ``reshape: { shape: [] }`` at max_batch_size 0 ("scalar tensors are not
    supported", tests/triton/test_seed_scalar.py), and the tensorflow backend
    would feed [1] to a rank-0 placeholder.
    """
    scalars = [t.name for t in (*artifact.inputs, *artifact.outputs) if t.shape == []]
    if scalars and backend == "tensorflow":
        raise PublishError(
            f"tensor(s) {', '.join(scalars)} are scalars (rank 0): Triton has no rank-0 tensors, so they travel "
            "as dims [1], which the tensorflow backend cannot feed to a rank-0 signature; use "
            "spec.target.backend: python (its model.py restores the rank), or give the model a batch dimension"
        )


def build_model_config(artifact: Artifact, model: OptimizedModel) -> ModelConfig:
    """Derive the Triton config from what the converter really produced plus ``spec.target``.

    The spec's maxBatchSize is a wish: when the signature has no variable
    leading dim on every tensor (a fixed batch of 1, or scalars), Triton must
    not batch, so the config falls back to max_batch_size 0 with full shapes
    rather than a config Triton would reject at load time.
    """
    target = model.spec.target
    _check_signature(artifact, target.backend)
    max_batch = triton_max_batch(target.max_batch_size, [*artifact.inputs, *artifact.outputs])
    batched = max_batch > 0
    inputs = tuple(_tensor_config(t, batched) for t in artifact.inputs)
    outputs = tuple(_tensor_config(t, batched) for t in artifact.outputs)
    preferred, delay = _dynamic_batching(model, max_batch if batched else None)
    trt = model.spec.tensorrt
    online_trt = _online_trt_precision(artifact, model)
    return ModelConfig(
        name=model.model_name,
        backend=target.backend,
        max_batch_size=max_batch,
        inputs=inputs,
        outputs=outputs,
        instance_kind=f"KIND_{instance_device(artifact, model)}",
        versions_to_keep=target.versions_to_keep,
        preferred_batch_sizes=preferred,
        max_queue_delay_microseconds=delay,
        warmup=warmup_possible(inputs),
        online_trt_precision=online_trt,
        online_trt_workspace_bytes=trt.max_workspace_size_bytes if online_trt else None,
        online_trt_minimum_segment_size=trt.minimum_segment_size if online_trt else None,
        online_trt_max_cached_engines=trt.maximum_cached_engines if online_trt else None,
        parameters=_backend_parameters(artifact, model, max_batch, preferred),
        trt_accelerator=trt_accelerator(artifact, model, max_batch),
        cuda_accelerator=cuda_accelerator(artifact, model),
    )


def _check_signature(artifact: Artifact, backend: str) -> None:
    """Something to serve, in a format ``backend`` serves, with unique tensor names and scalars it can feed."""
    if not artifact.inputs or not artifact.outputs:
        raise PublishError("the artifact's signature has no inputs or no outputs; nothing Triton could serve")
    _check_format(artifact.model_format, backend)
    names = [t.name for t in (*artifact.inputs, *artifact.outputs)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PublishError(f"tensor names must be unique across inputs and outputs; repeated: {', '.join(dupes)}")
    _check_scalars(artifact, backend)


def _dynamic_batching(model: OptimizedModel, max_batch: int | None) -> tuple[tuple[int, ...] | None, int]:
    """(preferred batch sizes within ``max_batch``, queue delay); (None, 0) without batching or without the spec's."""
    batching = model.spec.target.dynamic_batching
    if batching is None or max_batch is None:
        return None, 0
    preferred = tuple(s for s in batching.preferred_batch_sizes if 1 <= s <= max_batch)
    return preferred, batching.max_queue_delay_microseconds


def _online_trt_precision(artifact: Artifact, model: OptimizedModel) -> str | None:
    """TF-TRT at load time (the tensorflow backend's optimization): when asked for and not already applied."""
    trt = model.spec.tensorrt
    precision = artifact.precision or precision_of(model.spec)
    if model.spec.target.backend == "tensorflow" and trt.enabled and not artifact.trt_applied:
        return precision if precision in ("FP32", "FP16") else None
    return None


def _backend_parameters(
    artifact: Artifact, model: OptimizedModel, max_batch: int, preferred: tuple[int, ...] | None
) -> tuple[tuple[str, str], ...]:
    """OpenVINO's parameters, or the python backend's: which artefact model.py loads, and how."""
    if artifact.model_format == "openvino":
        return tuple(openvino_parameters(model, max_batch, preferred))
    if model.spec.target.backend != "python":
        return ()
    if artifact.model_format == "onnx":
        return ((PARAM_MODEL_FORMAT, "onnx"), (PARAM_ONNX_FILE, ONNX_FILENAME))
    return (
        (PARAM_SIGNATURE_KEY, artifact.signature_key),
        (PARAM_SAVEDMODEL_DIR, SAVEDMODEL_DIRNAME),
        # model.py restores the exact per-item shapes the signature wants (scalars, fixed batch).
        (PARAM_INPUT_SHAPES, json.dumps({t.name: t.shape for t in artifact.inputs}, separators=(",", ":"))),
    )


#: Which artefact format each backend serves.
BACKEND_FORMATS = {
    "tensorflow": ("savedmodel",),
    "python": ("savedmodel", "onnx", "openvino"),
    "onnxruntime": ("onnx",),
    "tensorrt": ("plan",),
    "openvino": ("openvino",),
}


def static_batch_sizes(max_batch: int, preferred: Sequence[int] | None) -> tuple[int, ...]:
    """The batch sizes an OpenVINO version compiles a static-shape model for: 1, the largest, the preferred."""
    if max_batch <= 0:
        return ()
    return tuple(sorted({1, max_batch, *(preferred or ())}))


def openvino_parameters(
    model: OptimizedModel, max_batch: int, preferred: Sequence[int] | None
) -> list[tuple[str, str]]:
    """config.pbtxt parameters of an OpenVINO IR version: Triton's openvino backend's, or the python flavour's.

    The openvino backend reads upper-case keys (PERFORMANCE_HINT, NUM_STREAMS...) and refuses unknown ones;
    it has no key for the inference precision, so it runs OpenVINO's default (the spec refuses
    ``inferencePrecision: f32`` there).  The python flavour's model.py reads the lower-case keys.
    """
    if model.spec.target.backend == "openvino":
        return [("PERFORMANCE_HINT", "LATENCY"), ("NUM_STREAMS", "1")]
    return [
        (PARAM_MODEL_FORMAT, "openvino"),
        (PARAM_OPENVINO_FILE, OPENVINO_FILENAME),
        (PARAM_INFERENCE_PRECISION, model.spec.openvino.inference_precision),
        (PARAM_STATIC_BATCHES, ",".join(str(b) for b in static_batch_sizes(max_batch, preferred))),
    ]


def _check_format(model_format: str, backend: str) -> None:
    if model_format not in BACKEND_FORMATS.get(backend, ()):
        raise PublishError(
            f"target.backend {backend} cannot serve a {model_format} artefact (it serves "
            f"{' or '.join(BACKEND_FORMATS.get(backend, ()))}); convert again with this spec"
        )


def instance_device(artifact: Artifact, model: OptimizedModel) -> str:
    """``target.device`` when set; else the ONNX path's rule (``spec.onnx_device``), else where the converter ran."""
    if artifact.model_format != "savedmodel":
        return onnx_device(model.spec)
    return model.spec.target.device or ("GPU" if artifact.gpu else "CPU")


def _profile(tensors: Sequence[TensorInfo], batch: int) -> str:
    """TensorRT EP profile shapes, ``name:1x224x224x3,other:...``, with the batch dim set to ``batch``."""
    return ",".join(
        f"{t.name}:" + "x".join(str(batch if (i == 0 and d < 0) else d) for i, d in enumerate(t.shape)) for t in tensors
    )


def _onnx_on_gpu(artifact: Artifact, model: OptimizedModel) -> bool:
    return (
        model.spec.target.backend == "onnxruntime"
        and artifact.model_format == "onnx"
        and instance_device(artifact, model) == "GPU"
    )


def cuda_accelerator(artifact: Artifact, model: OptimizedModel) -> tuple[tuple[str, str], ...]:
    """The CUDA EP's options for an onnxruntime model on GPU, with or without TensorRT.

    NHWC for FP32 and FP16; INT8 and an FP16 graph with an FP32 prefix keep NCHW, and the latter gets no TF32.
    """
    if not _onnx_on_gpu(artifact, model):
        return ()
    precision = artifact.precision or precision_of(model.spec)
    if precision == "INT8":
        return CUDA_EP_OPTIONS
    if precision == "FP16" and fp32_prefix(artifact):
        return CUDA_EP_OPTIONS + PREFIX_OPTIONS
    return CUDA_EP_OPTIONS + NHWC_OPTIONS


def fp32_prefix(artifact: Artifact) -> int:
    """How many compute nodes the FP16 graph kept FP32 (``onnx.fp16.fp32Prefix`` in the converter's report)."""
    prefix = artifact.report.get("onnx", {}).get("fp16", {}).get("fp32Prefix") or {}
    return int(prefix.get("computeNodes") or 0)


def trt_cache_paths(model_name: str) -> dict[str, str]:
    """Engine cache per model (ORT adds a hash of the graph and the GPU's compute capability); timing cache shared."""
    return {"engines": f"{TRT_CACHE_ROOT}/engines/{model_name}", "timing": f"{TRT_CACHE_ROOT}/timing"}


def trt_accelerator(artifact: Artifact, model: OptimizedModel, max_batch: int) -> tuple[tuple[str, str], ...]:
    """The onnxruntime backend's TensorRT accelerator, GPU instances only (names from onnxruntime_backend).

    No ``precision_mode``: it maps to TensorRT's FP16/INT8 builder flags, which TensorRT 11 removed; the
    precision is in the graph (FP16 tensors, Q/DQ pairs).  Engines are built by ORT inside Triton at first
    load and kept, with the timing cache, on ``TRT_CACHE_ROOT`` (the chart's per-GPU-kind volume); explicit
    profile shapes (batch 1..max) are set when every non-batch dim is known, so one engine serves every
    batch instead of a rebuild per new shape.
    """
    if not model.spec.tensorrt.enabled or not _onnx_on_gpu(artifact, model):
        return ()
    return trt_accelerator_params(model, artifact.inputs, max_batch)


def trt_accelerator_params(
    model: OptimizedModel, inputs: Sequence[TensorInfo], max_batch: int
) -> tuple[tuple[str, str], ...]:
    """The TensorRT accelerator's parameters for these inputs (the converter Job builds engines with them too)."""
    trt = model.spec.tensorrt
    cache = trt_cache_paths(model.model_name)
    params = [
        ("max_workspace_size_bytes", str(trt.max_workspace_size_bytes)),
        ("trt_engine_cache_enable", "1"),
        ("trt_engine_cache_path", cache["engines"]),
        ("trt_timing_cache_enable", "1"),
        ("trt_timing_cache_path", cache["timing"]),
    ]
    if all(d > 0 for t in inputs for d in t.shape[1:]) and all(t.shape for t in inputs):
        top = max(1, max_batch)
        params += [
            ("trt_profile_min_shapes", _profile(inputs, 1)),
            ("trt_profile_opt_shapes", _profile(inputs, top)),
            ("trt_profile_max_shapes", _profile(inputs, top)),
        ]
    return tuple(params)


def warmup_possible(inputs: Sequence[TensorConfig]) -> bool:
    """Zero-data warmup only works when every non-batch dim is known.

    Guessing 1 for a variable dim can make a convolution fail, and a failing
    warmup fails the whole load; so such models skip warmup instead.  Strings
    are skipped too: empty strings are rarely a valid request.
    """
    return all(-1 not in t.dims and t.data_type != "TYPE_STRING" for t in inputs)


# --------------------------------------------------------------------------- rendering


def _quote(text: str) -> str:
    return json.dumps(text)  # protobuf text format accepts JSON-style escapes for these strings


def _dims(dims: Sequence[int]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]" if dims else "[ ]"


def _tensor_block(t: TensorConfig) -> list[str]:
    return ["  {", f"    name: {_quote(t.name)}", f"    data_type: {t.data_type}", f"    dims: {_dims(t.dims)}", "  }"]


def _tensor_list(key: str, tensors: Sequence[TensorConfig]) -> list[str]:
    lines = [f"{key} ["]
    for i, t in enumerate(tensors):
        block = _tensor_block(t)
        if i < len(tensors) - 1:
            block[-1] += ","
        lines.extend(block)
    lines.append("]")
    return lines


def render_config(cfg: ModelConfig) -> str:
    lines = [f"name: {_quote(cfg.name)}"]
    if cfg.backend in PLATFORMS:
        lines.append(f"platform: {_quote(PLATFORMS[cfg.backend])}")
    else:  # python, openvino: backends without a platform name
        lines.append(f"backend: {_quote(cfg.backend)}")
    lines.append(f"max_batch_size: {cfg.max_batch_size}")
    lines += _tensor_list("input", cfg.inputs)
    lines += _tensor_list("output", cfg.outputs)
    if cfg.preferred_batch_sizes is not None:
        lines.append("dynamic_batching {")
        if cfg.preferred_batch_sizes:
            lines.append(f"  preferred_batch_size: {_dims(cfg.preferred_batch_sizes)}")
        lines.append(f"  max_queue_delay_microseconds: {cfg.max_queue_delay_microseconds}")
        lines.append("}")
    lines += [
        "instance_group [",
        f"  {{ count: {cfg.instance_count} kind: {cfg.instance_kind} }}",
        "]",
        version_policy_line(cfg),
    ]
    if cfg.warmup:
        lines += _warmup_lines(cfg)
    if cfg.online_trt_precision:
        lines += [
            "optimization {",
            "  execution_accelerators {",
            "    gpu_execution_accelerator: [",
            "      {",
            '        name: "tensorrt"',
            f'        parameters {{ key: "precision_mode" value: {_quote(cfg.online_trt_precision)} }}',
        ]
        for trt_key, trt_value in (
            ("max_workspace_size_bytes", cfg.online_trt_workspace_bytes),
            ("minimum_segment_size", cfg.online_trt_minimum_segment_size),
            ("max_cached_engines", cfg.online_trt_max_cached_engines),
        ):
            if trt_value:
                lines.append(f"        parameters {{ key: {_quote(trt_key)} value: {_quote(str(trt_value))} }}")
        lines += ["      }", "    ]", "  }", "}"]
    lines += _gpu_accelerators(cfg)
    for key, value in cfg.parameters:
        lines.append(f"parameters {{ key: {_quote(key)} value: {{ string_value: {_quote(value)} }} }}")
    return "\n".join(lines) + "\n"


def _gpu_accelerators(cfg: ModelConfig) -> list[str]:
    """TensorRT first (ORT tries EPs in order), then CUDA's own options, in one optimization block."""
    named = (("tensorrt", cfg.trt_accelerator), ("cuda", cfg.cuda_accelerator))
    blocks = [(name, params) for name, params in named if params]
    if not blocks:
        return []
    lines = ["optimization {", "  execution_accelerators {", "    gpu_execution_accelerator: ["]
    for i, (name, params) in enumerate(blocks):
        lines += ["      {", f"        name: {_quote(name)}"]
        lines += [f"        parameters {{ key: {_quote(k)} value: {_quote(v)} }}" for k, v in params]
        lines.append("      }," if i < len(blocks) - 1 else "      }")
    return [*lines, "    ]", "  }", "}"]


VERSION_POLICY_PREFIX = "version_policy:"


def version_policy_line(cfg: ModelConfig) -> str:
    if cfg.versions is not None:
        return f"{VERSION_POLICY_PREFIX} {{ specific: {{ versions: {_dims(sorted(set(cfg.versions)))} }} }}"
    return f"{VERSION_POLICY_PREFIX} {{ latest: {{ num_versions: {cfg.versions_to_keep} }} }}"


def same_interface(config_a: str, config_b: str) -> bool:
    """Whether two rendered configs differ only in which versions they load.

    Everything else (tensors, dtypes, backend, batching, parameters) is per
    model in Triton, so a version can only be served with a config equal to
    the one it was published with, up to the version_policy line.
    """

    def strip(text: str) -> list[str]:
        return [ln for ln in text.strip().splitlines() if not ln.startswith(VERSION_POLICY_PREFIX)]

    return strip(config_a) == strip(config_b)


def _warmup_lines(cfg: ModelConfig) -> list[str]:
    """One zero-data sample at batch 1 and, when batching, one at max batch: the shapes engines see."""
    sizes = [1] if cfg.max_batch_size <= 1 else [1, cfg.max_batch_size]
    lines = ["model_warmup ["]
    for n, size in enumerate(sizes):
        lines += ["  {", f'    name: "zeros_batch_{size}"', f"    batch_size: {size}"]
        for t in cfg.inputs:
            lines += [
                "    inputs {",
                f"      key: {_quote(t.name)}",
                f"      value: {{ data_type: {t.data_type} dims: {_dims(t.dims)} zero_data: true }}",
                "    }",
            ]
        lines.append("  }," if n < len(sizes) - 1 else "  }")
    lines.append("]")
    return lines
