"""Real TensorFlow → tf2onnx → OpenVINO IR (FP32, FP16, INT8 through NNCF), validated and published.

``target.backend: openvino`` converts the ONNX export on to OpenVINO IR; the
converter validates it with the very runner Triton's python flavour uses, and
the answers are checked here again against TensorFlow running the original.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.errors import ValidationError
from tests.tf.conftest import convbn_source, make_model
from tests.tf.test_onnx_path import calibration

pytest.importorskip("openvino", reason="the converter extra installs openvino")
pytestmark = pytest.mark.tf


def openvino_model(name: str, src: dict[str, Any], repo: Path, precision: str, cal: dict[str, Any] | None, **kw: Any):
    trt: dict[str, Any] = {"enabled": False, "precision": precision, **({"calibration": cal} if cal else {})}
    target = {"repository": f"file://{repo}", "modelName": name, "backend": "openvino", **kw.pop("target", {})}
    return make_model(name, src, repo, target=target, tensorrt=trt, **kw)


@pytest.mark.parametrize("precision", ["FP32", "FP16", "INT8"])
def test_convbn_to_openvino_and_publish(convbn_dir: Path, tmp_path: Path, precision: str) -> None:
    from edgeopt.converter.openvino_export import runner_module
    from edgeopt.converter.pipeline import convert_model
    from edgeopt.triton.publish import publish_version
    from tests.triton.tf_models import run_frozen_graph

    cal = calibration(tmp_path / "cal.npz", "input", [-1, 16, 16, 3]) if precision == "INT8" else None
    model = openvino_model("convbn-ov", convbn_source(convbn_dir), tmp_path / "repo", precision, cal)
    art = convert_model(model, tmp_path / "work")
    assert art.model_format == "openvino" and art.savedmodel_dir.name == "model.xml"
    assert not (art.work_dir / "model.onnx").exists(), "only the IR is published"
    rep = art.report
    ov = rep["onnx"]["openvino"]
    assert ov["runtimePrecision"] in ("bf16", "f32") and ov["inferencePrecision"] == "auto"
    assert rep["tensorrt"]["precision"] == precision and rep["latencyMs"]["afterRuntime"].startswith("openvino-cpu")
    names = [s["name"] for s in rep["stages"]]
    want = ["onnx", "openvino", "quantize", "validate"] if precision == "INT8" else ["onnx", "openvino", "validate"]
    assert [n for n in names if n in ("onnx", "openvino", "quantize", "validate")] == want
    x = np.random.default_rng(3).random((5, 16, 16, 3)).astype(np.float32)
    (want,) = run_frozen_graph(convbn_dir / "convbn_frozen.pb", {"input:0": x}, ["output:0"])
    runner = runner_module().Runner(str(art.savedmodel_dir), static_batches=[5])
    got = runner.run({"input": x})["output"]
    exact = precision != "INT8" and ov["runtimePrecision"] == "f32"
    np.testing.assert_allclose(got, want, rtol=1e-4 if exact else 0.05, atol=1e-5 if exact else 0.05)
    if precision == "INT8":
        assert ov["int8"]["method"] == "nncf" and ov["int8"]["calibration"]["samples"] == 32
        assert "FakeQuantize" in (art.savedmodel_dir.read_text())
    version = publish_version(art, model).version_dir
    published = {p.name for p in version.iterdir() if not p.name.startswith(".")}
    assert published == {"model.bin", "model.xml", "report.json"}
    config = (version.parent / "config.pbtxt").read_text()
    assert 'backend: "openvino"' in config and "KIND_CPU" in config and "PERFORMANCE_HINT" in config


def test_true_fp32_matches_tensorflow_tightly(convbn_dir: Path, tmp_path: Path) -> None:
    """inferencePrecision f32 (python flavour): no bf16 anywhere, so the FP32 tolerances gate it."""
    from edgeopt.converter.pipeline import convert_model

    model = openvino_model(
        "convbn-f32",
        convbn_source(convbn_dir),
        tmp_path / "repo",
        "FP32",
        None,
        target={"backend": "python"},
        openvino={"enabled": True, "inferencePrecision": "f32"},
        validation={"rtol": 1e-4, "atol": 1e-5},
    )
    art = convert_model(model, tmp_path / "work")
    assert art.report["onnx"]["openvino"]["runtimePrecision"] == "f32"
    assert art.report["validation"]["maxAbsError"] < 1e-4


def test_int8_outside_the_gate_publishes_nothing(convbn_dir: Path, tmp_path: Path) -> None:
    """INT8 calibrated on data far from what validation feeds, with a tolerance it cannot meet: ValidationError."""
    from edgeopt.converter.pipeline import convert_model

    cal = calibration(tmp_path / "cal.npz", "input", [-1, 16, 16, 3])
    model = openvino_model(
        "convbn-gate",
        convbn_source(convbn_dir),
        tmp_path / "repo",
        "INT8",
        cal,
        validation={"int8Rtol": 0.0, "int8Atol": 1e-7},
    )
    with pytest.raises(ValidationError):
        convert_model(model, tmp_path / "work")
    assert not any((tmp_path / "work").iterdir())
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())
