"""The GPU half of the ONNX path: a TensorRT plan and ONNX Runtime's TensorRT EP (skipped with the reason here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.tf.conftest import convbn_source, make_model

pytestmark = [pytest.mark.tf, pytest.mark.gpu]


def _gpu_model(convbn_dir: Path, tmp_path: Path, backend: str, precision: str) -> Any:
    cal = tmp_path / "cal.npz"
    np.savez(cal, input=np.random.default_rng(2).random((16, 16, 16, 3)).astype(np.float32))
    repo = tmp_path / "repo"
    return make_model(
        "convbn",
        convbn_source(convbn_dir),
        repo,
        target={"repository": f"file://{repo}", "modelName": "convbn", "backend": backend, "device": "GPU"},
        tensorrt={"enabled": True, "precision": precision, "maxBatchSize": 4, "calibration": {"uri": f"file://{cal}"}},
    )


@pytest.mark.parametrize("precision", ["FP16", "INT8"])
def test_tensorrt_plan_build(convbn_dir: Path, tmp_path: Path, precision: str) -> None:
    trt = pytest.importorskip("tensorrt", reason="TensorRT's Python bindings are not installed (GPU converter image)")
    from edgeopt.converter.pipeline import convert_model
    from edgeopt.triton.publish import publish_version

    model = _gpu_model(convbn_dir, tmp_path, "tensorrt", precision)
    art = convert_model(model, tmp_path / "work")
    assert art.model_format == "plan" and art.savedmodel_dir.name == "model.plan"
    plan = art.report["tensorrt"]["plan"]
    assert plan["tensorrt"] == trt.__version__ and plan["profile"]["input"]["max"] == [4, 16, 16, 3]
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(art.savedmodel_dir.read_bytes())
    assert engine is not None and engine.num_io_tensors == 2
    result = publish_version(art, model)
    assert (result.version_dir / "model.plan").is_file()
    assert 'platform: "tensorrt_plan"' in result.config_path.read_text()


def test_onnxruntime_tensorrt_ep_runs_the_int8_qdq_model(convbn_dir: Path, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        pytest.skip(reason="this onnxruntime has no TensorRT execution provider (needs onnxruntime-gpu + TensorRT)")
    from edgeopt.converter.pipeline import convert_model

    art = convert_model(_gpu_model(convbn_dir, tmp_path, "onnxruntime", "INT8"), tmp_path / "work")
    assert art.report["onnx"]["int8"]["layout"]["name"] == "S8S8-QDQ"
    sess = ort.InferenceSession(
        str(art.savedmodel_dir),
        providers=[("TensorrtExecutionProvider", {"trt_int8_enable": True}), "CPUExecutionProvider"],
    )
    x = np.random.default_rng(5).random((2, 16, 16, 3)).astype(np.float32)
    cpu = ort.InferenceSession(str(art.savedmodel_dir), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], cpu.run(None, {"input": x})[0], atol=0.05)
