"""TF-TRT on a real GPU: skipped with the reason where TensorFlow has no TensorRT (every CPU machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tf.conftest import convbn_source, make_model

pytestmark = [pytest.mark.tf, pytest.mark.gpu]


@pytest.fixture(scope="module", autouse=True)
def _need_tensorrt() -> None:
    from edgeopt.converter.tftrt import tensorrt_version

    if tensorrt_version() is None:
        pytest.skip(reason="TensorFlow here was not built with TensorRT (run in the GPU converter image)")


@pytest.mark.parametrize("precision", ["FP32", "FP16"])
def test_convbn_with_tftrt(convbn_dir: Path, tmp_path: Path, precision: str) -> None:
    from edgeopt.converter.pipeline import convert_model

    model = make_model(
        "convbn",
        convbn_source(convbn_dir),
        tmp_path / "repo",
        tensorrt={"enabled": True, "precision": precision, "maxBatchSize": 4, "minimumSegmentSize": 2},
        validation={"rtol": 1e-2, "atol": 1e-3},
    )
    artifact = convert_model(model, tmp_path / "work")
    assert artifact.trt_applied and artifact.precision == precision
    assert artifact.report["tensorrt"]["engines"] >= 1
    assert artifact.report["environment"]["tensorrt"]


def test_int8_with_synthetic_calibration(convbn_dir: Path, tmp_path: Path) -> None:
    from edgeopt.converter.pipeline import convert_model

    model = make_model(
        "convbn",
        convbn_source(convbn_dir),
        tmp_path / "repo",
        tensorrt={"enabled": True, "precision": "INT8", "calibration": {"synthetic": True, "samples": 8}},
        validation={"rtol": 0.2, "atol": 0.05},
    )
    artifact = convert_model(model, tmp_path / "work")
    assert artifact.report["tensorrt"]["calibration"]["source"] == "synthetic"
