"""Validation/latency input data and the pass/fail rule, without TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from edgeopt.artifact import TensorInfo
from edgeopt.converter import feeds
from edgeopt.converter.graph_model import sanitize_key, tensor_name
from edgeopt.errors import InputError, ValidationError


def test_random_inputs_replace_unknown_dims_and_are_seeded() -> None:
    inputs = [
        TensorInfo("x", "FP32", [-1, 1]),
        TensorInfo("img", "UINT8", [-1, -1, -1, 3]),
        TensorInfo("b", "BOOL", [2]),
    ]
    a = feeds.random_inputs(inputs, batch=3, seed=4)
    assert a["x"].shape == (3, 1) and a["x"].dtype == np.float32
    assert a["img"].shape == (3, 32, 32, 3) and a["img"].dtype == np.uint8
    assert a["b"].shape == (2,) and a["b"].dtype == bool
    b = feeds.random_inputs(inputs, batch=3, seed=4)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], feeds.random_inputs(inputs, batch=3, seed=5)["x"])


def test_check_arrays_rejects_float_data_for_int_inputs_and_ragged_batches() -> None:
    with pytest.raises(InputError, match="float64 but input ids is INT64"):
        feeds.check_arrays({"ids": np.zeros((2, 3))}, [TensorInfo("ids", "INT64", [-1, 3])], what="f")
    with pytest.raises(InputError, match="disagree on the number of samples"):
        feeds.check_arrays(
            {"a": np.zeros((2, 1), np.float32), "b": np.zeros((3, 1), np.float32)},
            [TensorInfo("a", "FP32", [-1, 1]), TensorInfo("b", "FP32", [-1, 1])],
            what="f",
        )


def test_split_batches() -> None:
    arrays = {"x": np.arange(5)}
    assert [b["x"].tolist() for b in feeds.split_batches(arrays, 2)] == [[0, 1], [2, 3], [4]]


def test_signature_keys_from_node_names() -> None:
    assert sanitize_key("y:0") == "y" and sanitize_key("y") == "y"
    assert sanitize_key("scope/out:1") == "scope_out_1"
    assert sanitize_key("0logits") == "t_0logits"
    assert tensor_name("y") == "y:0" and tensor_name("y:2") == "y:2"


def test_compare_reports_errors_and_fails_beyond_tolerance() -> None:
    from edgeopt.converter.validate import compare

    ref = {"y": np.array([1.0, 2.0, 4.0], np.float32)}
    ok = compare(ref, {"y": np.array([1.0, 2.0, 4.0001], np.float32)}, rtol=1e-3, atol=0)
    assert ok["maxAbsError"] == pytest.approx(1e-4, rel=1e-2) and ok["maxRelError"] == pytest.approx(2.5e-5, rel=1e-2)
    with pytest.raises(ValidationError, match=r"1 of 3 values off, max abs error 0\.5.*index \[2\]: 4\.5 vs 4"):
        compare(ref, {"y": np.array([1.0, 2.0, 4.5], np.float32)}, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValidationError, match="NaN/Inf"):
        compare(ref, {"y": np.array([1.0, np.nan, 4.0], np.float32)}, rtol=1, atol=1)
    with pytest.raises(ValidationError, match="shape"):
        compare(ref, {"y": np.zeros((1, 3), np.float32)}, rtol=1, atol=1)
