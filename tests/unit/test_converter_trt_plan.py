"""The pure half of TF-TRT: parameters, engine shapes, calibration feeding. No TensorFlow, no GPU."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edgeopt.artifact import TensorInfo
from edgeopt.converter import trt_plan
from edgeopt.errors import ConversionError, InputError
from edgeopt.spec import Calibration, TensorRT

IMAGE = TensorInfo("image", "FP32", [-1, 8, 8, 3])
MASK = TensorInfo("mask", "INT32", [-1, 8])


def test_conversion_params_follow_the_spec() -> None:
    trt = TensorRT(precision="FP16", minimum_segment_size=5, maximum_cached_engines=2, max_workspace_size_bytes=1 << 28)
    params = trt_plan.conversion_params(trt)
    assert params["precision_mode"] == "FP16"
    assert params["minimum_segment_size"] == 5
    assert params["maximum_cached_engines"] == 2
    assert params["max_workspace_size_bytes"] == 1 << 28
    assert params["use_calibration"] is False
    assert params["use_dynamic_shape"] is True and params["dynamic_shape_profile_strategy"] == "Range"
    assert trt_plan.conversion_params(TensorRT(precision="INT8"))["use_calibration"] is True


def test_engine_shapes_span_batch_one_to_max() -> None:
    plans = trt_plan.engine_shapes([IMAGE, MASK], max_batch_size=8)
    assert plans == [
        {"image": (1, 8, 8, 3), "mask": (1, 8)},
        {"image": (8, 8, 8, 3), "mask": (8, 8)},
    ]
    assert trt_plan.engine_shapes([IMAGE], max_batch_size=1) == [{"image": (1, 8, 8, 3)}]
    fixed = TensorInfo("x", "FP32", [4, 2])
    assert trt_plan.engine_shapes([fixed], max_batch_size=8) == [{"x": (4, 2)}]


def test_engine_shapes_need_declared_non_batch_dims() -> None:
    with pytest.raises(ConversionError, match=r"image.*unknown non-batch dimensions.*buildEngines: false"):
        trt_plan.engine_shapes([TensorInfo("image", "FP32", [-1, -1, -1, 3])], max_batch_size=4)


def test_int8_without_data_or_opt_in_is_refused() -> None:
    with pytest.raises(InputError, match="INT8 needs calibration data"):
        trt_plan.calibration_arrays(TensorRT(precision="INT8"), [IMAGE])
    with pytest.raises(InputError, match="synthetic: true"):
        trt_plan.calibration_arrays(TensorRT(precision="INT8", calibration=Calibration()), [IMAGE])


def test_synthetic_calibration_only_on_opt_in_and_batched() -> None:
    trt = TensorRT(precision="INT8", max_batch_size=4, calibration=Calibration(samples=10, synthetic=True))
    arrays, origin = trt_plan.calibration_arrays(trt, [IMAGE, MASK], seed=1)
    assert origin == "synthetic"
    assert arrays["image"].shape == (10, 8, 8, 3) and arrays["image"].dtype == np.float32
    assert arrays["mask"].dtype == np.int32
    batches = trt_plan.calibration_batches(arrays, [IMAGE, MASK], trt.max_batch_size)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    assert all(len(b) == 2 and b[1].shape[1:] == (8,) for b in batches)
    again, _ = trt_plan.calibration_arrays(trt, [IMAGE, MASK], seed=1)
    np.testing.assert_array_equal(arrays["image"], again["image"])  # seeded


def test_calibration_from_npz_file(tmp_path: Path) -> None:
    data = np.random.default_rng(0).standard_normal((6, 8, 8, 3)).astype(np.float64)
    np.savez(tmp_path / "cal.npz", image=data, mask=np.ones((6, 8), np.int64))
    trt = TensorRT(precision="INT8", calibration=Calibration(uri=f"file://{tmp_path}/cal.npz", samples=4))
    arrays, origin = trt_plan.calibration_arrays(trt, [IMAGE, MASK])
    assert origin == f"file:{tmp_path}/cal.npz"
    assert arrays["image"].shape == (4, 8, 8, 3) and arrays["image"].dtype == np.float32  # cast to the input
    assert arrays["mask"].dtype == np.int32


def test_calibration_file_errors_name_the_problem(tmp_path: Path) -> None:
    np.savez(tmp_path / "wrong.npz", pixels=np.zeros((2, 8, 8, 3), np.float32))
    trt = TensorRT(precision="INT8", calibration=Calibration(uri=f"file://{tmp_path}/wrong.npz"))
    with pytest.raises(InputError, match=r"no array for input\(s\) image; it holds pixels"):
        trt_plan.calibration_arrays(trt, [IMAGE])
    np.save(tmp_path / "shape.npy", np.zeros((2, 8, 9, 3), np.float32))
    trt = TensorRT(precision="INT8", calibration=Calibration(uri=f"file://{tmp_path}/shape.npy"))
    with pytest.raises(InputError, match=r"dimension 2: 9 != 8"):
        trt_plan.calibration_arrays(trt, [IMAGE])
    with pytest.raises(InputError, match=r"\.npy \(one array\) but the model has 2 inputs"):
        trt_plan.calibration_arrays(trt, [IMAGE, MASK])
    trt = TensorRT(precision="INT8", calibration=Calibration(uri=f"file://{tmp_path}/missing.npz"))
    with pytest.raises(InputError, match="does not exist"):
        trt_plan.calibration_arrays(trt, [IMAGE])


def test_planning_and_validation_modules_do_not_load_tensorflow() -> None:
    import subprocess

    code = (
        "import sys, edgeopt.converter.trt_plan, edgeopt.converter.feeds, edgeopt.converter.validate, "
        "edgeopt.converter.command, edgeopt_dev.samples; print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
