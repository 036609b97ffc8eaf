"""config.pbtxt for the ONNX path, field by field against what the backends read; plus the spec rules.

- onnxruntime_onnx (onnxruntime_backend README): ``platform``, default file
  ``model.onnx``, ``optimization.execution_accelerators.gpu_execution_accelerator``
  named ``tensorrt`` with ``max_workspace_size_bytes``, engine and timing caches
  and profile shapes, but no ``precision_mode`` (TensorRT 11 has no precision
  flags: the graph carries it); then ``cuda`` with the CUDA EP's options.
- tensorrt_plan: ``platform``, default file ``model.plan``, GPU instances, no accelerator.
- python + onnx: the ONNX flavour's parameters.
Pure: no TensorFlow, no Triton (tests/triton loads the python flavour for real).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from edgeopt.artifact import Artifact, TensorInfo
from edgeopt.converter import onnx_quantize
from edgeopt.converter.trt_build import profile_shapes
from edgeopt.errors import ConversionError, PublishError, SpecError
from edgeopt.spec import parse_manifest, uses_onnx
from edgeopt.triton.config import (
    CUDA_EP_OPTIONS,
    NHWC_OPTIONS,
    TRT_CACHE_ROOT,
    build_model_config,
    trt_cache_paths,
)


def model(target: dict[str, Any], tensorrt: dict[str, Any] | None = None, **spec: Any) -> Any:
    return parse_manifest(
        {
            "apiVersion": "edgeopt.io/v1alpha1",
            "kind": "OptimizedModel",
            "metadata": {"name": "mnet"},
            "spec": {
                "source": {"uri": "file:///src", "format": "SavedModel"},
                "target": {"repository": "file:///repo", **target},
                "tensorrt": tensorrt if tensorrt is not None else {"enabled": False},
                **spec,
            },
        }
    )


def artifact(fmt: str = "onnx", **kw: Any) -> Artifact:
    base: dict[str, Any] = dict(
        savedmodel_dir=Path(f"/nonexistent/model.{fmt}"),
        signature_key="onnx",
        inputs=[TensorInfo("images", "FP32", [-1, 224, 224, 3])],
        outputs=[TensorInfo("scores", "FP32", [-1, 1000])],
        model_format=fmt,
    )
    base.update(kw)
    return Artifact(**base)


def params(text: str) -> dict[str, str]:
    return dict(re.findall(r'parameters \{ key: "([^"]+)" value: "([^"]*)" \}', text))


CAL = {"uri": "file:///data/cal.npz"}


def test_onnxruntime_gpu_with_tensorrt_accelerator() -> None:
    m = model(
        {"backend": "onnxruntime", "device": "GPU", "maxBatchSize": 8},
        {"enabled": True, "precision": "FP16", "maxWorkspaceSizeBytes": 1 << 31},
    )
    text = build_model_config(artifact(), m).render()
    assert 'platform: "onnxruntime_onnx"' in text and "backend:" not in text
    assert "max_batch_size: 8" in text
    assert "dims: [ 224, 224, 3 ]" in text and "dims: [ 1000 ]" in text
    assert "kind: KIND_GPU" in text
    block = text[text.index("optimization {") :]
    assert "gpu_execution_accelerator: [" in block and 'name: "tensorrt"' in block
    assert "cpu_execution_accelerator" not in text
    trt_block = block[: block.index('name: "cuda"')]  # TensorRT first: ORT tries EPs in order, CUDA catches the rest
    p = params(trt_block)
    assert "precision_mode" not in p  # FP16/INT8 builder flags are gone in TensorRT 11; the graph is FP16
    assert p["max_workspace_size_bytes"] == str(1 << 31)
    assert p["trt_engine_cache_enable"] == p["trt_timing_cache_enable"] == "1"
    # Triton's repository is read-only: the caches live on the chart's volume (under /tmp), engines per model.
    assert p["trt_engine_cache_path"] == f"{TRT_CACHE_ROOT}/engines/mnet" and TRT_CACHE_ROOT.startswith("/tmp/")
    assert p["trt_timing_cache_path"] == f"{TRT_CACHE_ROOT}/timing"
    assert params(block[block.index('name: "cuda"') :]) == {"cudnn_conv_algo_search": "EXHAUSTIVE", "prefer_nhwc": "1"}
    assert p["trt_profile_min_shapes"] == "images:1x224x224x3"
    assert p["trt_profile_opt_shapes"] == p["trt_profile_max_shapes"] == "images:8x224x224x3"
    # The onnxruntime backend reads no python-flavour parameters.
    assert "string_value" not in text


def test_onnxruntime_gpu_without_accelerator_and_unknown_dims_has_no_profile() -> None:
    m = model({"backend": "onnxruntime", "device": "GPU"}, {"enabled": True, "precision": "FP32"})
    art = artifact(inputs=[TensorInfo("images", "FP32", [-1, -1, -1, 3])])
    p = params(build_model_config(art, m).render())
    assert p["trt_engine_cache_enable"] == "1" and not any(k.startswith("trt_profile") for k in p)
    m_off = model({"backend": "onnxruntime", "device": "GPU"}, {"enabled": False, "precision": "FP32"})
    text = build_model_config(artifact(precision="FP32"), m_off).render()  # the CUDA EP alone, tuned options
    assert 'name: "cuda"' in text and 'name: "tensorrt"' not in text
    assert params(text) == dict(CUDA_EP_OPTIONS + NHWC_OPTIONS)  # FP32: TF32 stays ORT's default (on)
    assert "use_tf32" not in params(text)


def test_int8_on_the_cuda_ep_keeps_nchw() -> None:
    """NHWC made the S8S8 Q/DQ graphs 2.5x slower on the H200 (bench/README.md): INT8 gets no prefer_nhwc."""
    int8 = {"enabled": False, "precision": "INT8", "calibration": {"synthetic": True}}
    m = model({"backend": "onnxruntime", "device": "GPU"}, int8)
    text = build_model_config(artifact(precision="INT8"), m).render()
    assert 'name: "cuda"' in text
    assert params(text) == {"cudnn_conv_algo_search": "EXHAUSTIVE"}


@pytest.mark.parametrize(("kept", "want"), [(8, {"use_tf32": "0"}), (0, {"prefer_nhwc": "1"})])
def test_an_fp16_graph_with_an_fp32_prefix_gets_nchw_and_no_tf32(kept: int, want: dict[str, str]) -> None:
    """TF32 would round the prefix's conv inputs to FP16's mantissa; NHWC ran that mixed graph 1.45x slower."""
    m = model({"backend": "onnxruntime", "device": "GPU"}, {"enabled": False, "precision": "FP16"})
    report = {"onnx": {"fp16": {"fp32Prefix": {"computeNodes": kept, "ofComputeNodes": 54}}}}
    text = build_model_config(artifact(precision="FP16", report=report), m).render()
    assert params(text) == {"cudnn_conv_algo_search": "EXHAUSTIVE", **want}


@pytest.mark.parametrize("name", ["mnet", "a-b", "x1"])
def test_trt_cache_paths_stay_under_the_volume(name: str) -> None:
    paths = trt_cache_paths(name)
    assert all(p.startswith(TRT_CACHE_ROOT + "/") for p in paths.values())
    assert paths["engines"].endswith(f"/{name}") and paths["timing"] != paths["engines"]


def test_the_chart_mounts_the_cache_volume_where_the_config_points() -> None:
    chart = Path(__file__).resolve().parents[2] / "charts" / "edgeopt" / "templates" / "triton.yaml"
    assert f"mountPath: {TRT_CACHE_ROOT}}}" in chart.read_text()


def test_onnxruntime_cpu_int8_has_no_accelerator() -> None:
    m = model({"backend": "onnxruntime", "device": "CPU"}, {"enabled": False, "precision": "INT8", "calibration": CAL})
    text = build_model_config(artifact(gpu=True), m).render()  # the converter's GPU does not matter: device says
    assert 'platform: "onnxruntime_onnx"' in text
    assert "kind: KIND_CPU" in text and "KIND_GPU" not in text
    assert "optimization" not in text and "execution_accelerators" not in text


def test_tensorrt_plan_config() -> None:
    m = model(
        {"backend": "tensorrt", "device": "GPU", "maxBatchSize": 4},
        {"enabled": True, "precision": "INT8", "calibration": CAL},
    )
    text = build_model_config(artifact("plan"), m).render()
    assert 'platform: "tensorrt_plan"' in text
    assert "max_batch_size: 4" in text and "kind: KIND_GPU" in text
    assert "optimization" not in text and "string_value" not in text


def test_python_onnx_flavour_parameters() -> None:
    m = model({"backend": "python", "device": "CPU"}, onnx={"enabled": True})
    text = build_model_config(artifact(), m).render()
    assert 'backend: "python"' in text
    assert 'parameters { key: "model_format" value: { string_value: "onnx" } }' in text
    assert 'parameters { key: "onnx_file" value: { string_value: "model.onnx" } }' in text
    assert "signature_key" not in text and "optimization" not in text


@pytest.mark.parametrize(
    ("backend", "fmt"), [("onnxruntime", "savedmodel"), ("tensorrt", "onnx"), ("tensorflow", "onnx")]
)
def test_backend_and_artefact_must_agree(backend: str, fmt: str) -> None:
    tensorrt = {"enabled": True, "precision": "FP16"} if backend == "tensorrt" else {"enabled": False}
    m = model({"backend": backend, "device": "GPU"}, tensorrt)
    with pytest.raises(PublishError, match=f"cannot serve a {fmt} artefact"):
        build_model_config(artifact(fmt), m)


# --------------------------------------------------------------------------- spec rules and layouts


def test_spec_rules_for_the_onnx_path() -> None:
    assert uses_onnx(model({"backend": "onnxruntime", "device": "CPU"}).spec)
    assert uses_onnx(model({"backend": "python"}, onnx={"enabled": True}).spec)
    assert not uses_onnx(model({"backend": "python"}).spec)
    assert model({"backend": "onnxruntime"}).spec.onnx.opset == 17
    with pytest.raises(SpecError, match="runs only on GPU"):
        model({"backend": "tensorrt", "device": "CPU"})
    with pytest.raises(SpecError, match="TensorRT accelerator exists only on GPU"):
        model({"backend": "onnxruntime", "device": "CPU"}, {"enabled": True})
    with pytest.raises(SpecError, match="INT8 needs calibration data"):
        model({"backend": "onnxruntime", "device": "CPU"}, {"enabled": False, "precision": "INT8"})
    with pytest.raises(SpecError, match="tensorflow backend serves SavedModels"):
        model({"backend": "tensorflow"}, onnx={"enabled": True})
    with pytest.raises(SpecError, match="calibrationMethod"):
        model({"backend": "onnxruntime"}, onnx={"calibrationMethod": "KL"})
    with pytest.raises(SpecError, match="opset: must be <= 18"):
        model({"backend": "onnxruntime"}, onnx={"opset": 19})


@pytest.mark.parametrize(
    ("target", "tensorrt", "layout"),
    [
        ({"backend": "onnxruntime", "device": "CPU"}, {"enabled": False}, "U8S8-QOperator"),
        ({"backend": "python", "device": "CPU"}, {"enabled": False}, "U8S8-QOperator"),
        ({"backend": "onnxruntime", "device": "GPU"}, {"enabled": True}, "S8S8-QDQ"),
        ({"backend": "tensorrt", "device": "GPU"}, {"enabled": True}, "S8S8-QDQ"),
        ({"backend": "onnxruntime", "device": "GPU"}, {"enabled": False}, "S8S8-QDQ"),
    ],
)
def test_int8_layout_follows_the_target(target: dict[str, Any], tensorrt: dict[str, Any], layout: str) -> None:
    onnx = {"enabled": True} if target["backend"] == "python" else {}
    m = model(target, {**tensorrt, "precision": "INT8", "calibration": CAL}, onnx=onnx)
    chosen = onnx_quantize.layout_for(m.spec)
    assert chosen.name == layout and chosen.per_channel
    assert chosen.symmetric_activations == (layout == "S8S8-QDQ")


def test_plan_profile_spans_batch_one_to_max() -> None:
    shapes = profile_shapes([TensorInfo("x", "FP32", [-1, 16, 16, 3])], 8)
    assert shapes == {"x": ((1, 16, 16, 3), (8, 16, 16, 3), (8, 16, 16, 3))}
    with pytest.raises(ConversionError, match="unknown non-batch dimensions"):
        profile_shapes([TensorInfo("x", "FP32", [-1, -1, 3])], 8)


def test_unset_device_follows_the_tensorrt_accelerator_not_the_converters_hardware() -> None:
    on = model({"backend": "onnxruntime"}, {"enabled": True, "precision": "INT8", "calibration": CAL})
    text = build_model_config(artifact(gpu=False), on).render()  # converted on a CPU node: still a GPU config
    assert "kind: KIND_GPU" in text and 'name: "tensorrt"' in text
    assert onnx_quantize.layout_for(on.spec).name == "S8S8-QDQ"
    off = model({"backend": "onnxruntime"}, {"enabled": False, "precision": "INT8", "calibration": CAL})
    text = build_model_config(artifact(gpu=True), off).render()
    assert "kind: KIND_CPU" in text and "optimization" not in text
    assert onnx_quantize.layout_for(off.spec).name == "U8S8-QOperator"


@pytest.mark.parametrize("field", [{"versionCompatible": True}, {"hardwareCompatibility": "AmperePlus"}])
def test_plan_compatibility_fields_need_the_tensorrt_backend(field: dict[str, Any]) -> None:
    trt = {"enabled": True, "precision": "FP16", **field}
    m = model({"backend": "tensorrt", "device": "GPU"}, trt)
    assert (m.spec.tensorrt.version_compatible, m.spec.tensorrt.hardware_compatibility) != (False, None)
    with pytest.raises(SpecError, match="only target.backend tensorrt builds"):
        model({"backend": "onnxruntime", "device": "GPU"}, trt)
