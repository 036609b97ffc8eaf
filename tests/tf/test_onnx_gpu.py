"""The GPU half of the ONNX path: a TensorRT plan and ONNX Runtime's TensorRT EP (skipped with the reason here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.tf.conftest import convbn_source, make_model

pytestmark = [pytest.mark.tf, pytest.mark.gpu]


def _gpu_model(convbn_dir: Path, tmp_path: Path, backend: str, precision: str, **trt: Any) -> Any:
    cal = tmp_path / "cal.npz"
    np.savez(cal, input=np.random.default_rng(2).random((16, 16, 16, 3)).astype(np.float32))
    repo = tmp_path / "repo"
    return make_model(
        "convbn",
        convbn_source(convbn_dir),
        repo,
        target={"repository": f"file://{repo}", "modelName": "convbn", "backend": backend, "device": "GPU"},
        tensorrt={"enabled": True, "precision": precision, "maxBatchSize": 4, "calibration": {"uri": f"file://{cal}"}}
        | trt,
    )


@pytest.mark.parametrize(
    ("precision", "compat"),
    [("FP16", {}), ("INT8", {}), ("FP16", {"versionCompatible": True, "hardwareCompatibility": "AmperePlus"})],
)
def test_tensorrt_plan_build(convbn_dir: Path, tmp_path: Path, precision: str, compat: dict[str, Any]) -> None:
    """A strongly typed plan from the FP16 / S8S8 Q/DQ ONNX, no precision flags (TensorRT 10.x and 11.x)."""
    trt = pytest.importorskip("tensorrt", reason="TensorRT's Python bindings are not installed (GPU converter image)")
    from edgeopt.converter.pipeline import convert_model
    from edgeopt.triton.publish import publish_version

    model = _gpu_model(convbn_dir, tmp_path, "tensorrt", precision, **compat)
    art = convert_model(model, tmp_path / "work")
    assert art.model_format == "plan" and art.savedmodel_dir.name == "model.plan"
    plan = art.report["tensorrt"]["plan"]
    assert plan["tensorrt"] == trt.__version__ and plan["profile"]["input"]["max"] == [4, 16, 16, 3]
    assert plan["flags"]["network"] == ["STRONGLY_TYPED"]
    assert plan["flags"]["builder"] == (["VERSION_COMPATIBLE"] if compat else [])
    assert art.report["environment"]["tensorrt"] == trt.__version__ and art.report["environment"]["gpu"]
    assert art.report["onnx"]["precisionBy"] == "onnx"
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    runtime.engine_host_code_allowed = bool(compat)  # a version-compatible plan carries its lean runtime
    engine = runtime.deserialize_cuda_engine(art.savedmodel_dir.read_bytes())
    assert engine is not None and engine.num_io_tensors == 2
    result = publish_version(art, model)
    assert (result.version_dir / "model.plan").is_file()
    assert 'platform: "tensorrt_plan"' in result.config_path.read_text()


def test_the_job_builds_the_accelerators_engines(convbn_dir: Path, tmp_path: Path) -> None:
    """tensorrt.buildEngines: ORT's TensorRT EP builds the engines in the Job, with the config's parameters."""
    ort = pytest.importorskip("onnxruntime")
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        pytest.skip(reason="this onnxruntime has no TensorRT execution provider (needs onnxruntime-gpu + TensorRT)")
    from edgeopt.converter.pipeline import convert_model

    art = convert_model(_gpu_model(convbn_dir, tmp_path, "onnxruntime", "FP16"), tmp_path / "work")
    engines = art.report["onnx"]["tensorrtEngines"]
    assert engines["engines"] >= 1 and engines["engineBytes"] > 0 and engines["batches"] == [1, 4]
    assert engines["providers"][0] == "TensorrtExecutionProvider"
    assert not (art.savedmodel_dir.parent / "trt-scratch").exists()  # built to check and time, not published


@pytest.mark.parametrize("precision", ["FP16", "INT8"])
def test_onnxruntime_tensorrt_ep_runs_the_published_model(convbn_dir: Path, tmp_path: Path, precision: str) -> None:
    """The TensorRT EP with the options config.pbtxt gives it (no precision flags), caches written where it says."""
    ort = pytest.importorskip("onnxruntime")
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        pytest.skip(reason="this onnxruntime has no TensorRT execution provider (needs onnxruntime-gpu + TensorRT)")
    from edgeopt.converter.pipeline import convert_model
    from edgeopt.triton.config import build_model_config

    model = _gpu_model(convbn_dir, tmp_path, "onnxruntime", precision)
    art = convert_model(model, tmp_path / "work")
    if precision == "INT8":
        assert art.report["onnx"]["int8"]["layout"]["name"] == "S8S8-QDQ"
    options = dict(build_model_config(art, model).trt_accelerator)
    cache = tmp_path / "cache"  # the config's paths are inside Triton's container; same options, local dir
    options.update(trt_engine_cache_path=str(cache / "engines"), trt_timing_cache_path=str(cache / "timing"))
    options["trt_max_workspace_size"] = options.pop("max_workspace_size_bytes")  # Triton's key → ORT's
    sess = ort.InferenceSession(
        str(art.savedmodel_dir),
        providers=[("TensorrtExecutionProvider", options), "CPUExecutionProvider"],
    )
    x = np.random.default_rng(5).random((2, 16, 16, 3)).astype(np.float32)
    cpu = ort.InferenceSession(str(art.savedmodel_dir), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], cpu.run(None, {"input": x})[0], atol=0.05)
    assert any((cache / "engines").glob("*.engine")), "the engine cache was not written"
