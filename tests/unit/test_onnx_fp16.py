"""FP16 in the graph (onnx_fp16) and the strongly typed plan's pure half (trt_build): no TensorFlow, no GPU.

The graphs are real ONNX models built with onnx.helper and run with ONNX
Runtime on the CPU, so the FP16 file is checked for what it computes, not
only for what it says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.converter import onnx_fp16, trt_build
from edgeopt.errors import ConversionError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _small_cnn(path: Path) -> Path:
    """image [N,8,8,3] NHWC → Transpose → Conv → Relu → ReduceMean → MatMul → Softmax (+ Exp branch summed)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "b"),
        numpy_helper.from_array(rng.normal(0, 0.5, (4, 5)).astype(np.float32), "fc"),
    ]
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2], name="t"),
        helper.make_node("Conv", ["nchw", "w", "b"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("ReduceMean", ["relu"], ["pooled"], axes=[2, 3], keepdims=0, name="mean"),
        helper.make_node("MatMul", ["pooled", "fc"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1, name="softmax"),
        helper.make_node("Exp", ["probs"], ["e"], name="exp"),
        helper.make_node("Add", ["probs", "e"], ["scores"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 8, 8, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"image": x})[0])


def _node_types(model: Any) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.output)}
    return {n.name: types.get(n.output[0], 0) for n in inferred.graph.node}


def test_fp16_graph_keeps_io_and_sensitive_ops_fp32(tmp_path: Path) -> None:
    src = _small_cnn(tmp_path / "fp32.onnx")
    details = onnx_fp16.to_fp16(src, tmp_path / "fp16.onnx")
    half = onnx.load(str(tmp_path / "fp16.onnx"))
    # inputs and outputs keep the spec's dtype: the Triton config and the clients do not change
    assert [i.type.tensor_type.elem_type for i in half.graph.input] == [onnx.TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in half.graph.output] == [onnx.TensorProto.FLOAT]
    types = _node_types(half)
    assert types["conv"] == types["relu"] == types["fc"] == onnx.TensorProto.FLOAT16
    assert types["mean"] == types["softmax"] == types["exp"] == onnx.TensorProto.FLOAT
    weights = {i.name: i.data_type for i in half.graph.initializer}
    assert weights["w"] == onnx.TensorProto.FLOAT16
    nodes = details["nodes"]
    assert nodes == onnx_fp16.node_precisions(half)
    assert nodes["fp16"] >= 3 and nodes["fp32"] >= 3 and nodes["cast"] >= 2
    assert details["fileBytes"] == (tmp_path / "fp16.onnx").stat().st_size
    x = np.random.default_rng(1).random((4, 8, 8, 3)).astype(np.float32)
    want, got = _run(src, x), _run(tmp_path / "fp16.onnx", x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)
    assert not np.array_equal(got, want)  # it really computed in FP16


def test_block_list_is_the_converters_plus_ours() -> None:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    blocked = set(onnx_fp16.op_block_list())
    assert set(DEFAULT_OP_BLOCK_LIST) <= blocked and blocked >= onnx_fp16.FP32_OPS
    assert {"Softmax", "ReduceMean", "BatchNormalization", "LayerNormalization", "Exp", "Log"} <= blocked
    assert "Conv" not in blocked and "MatMul" not in blocked


def test_graph_precision_of_fp32_fp16_and_qdq(tmp_path: Path) -> None:
    from onnxruntime import quantization as q

    src = _small_cnn(tmp_path / "fp32.onnx")
    assert trt_build.graph_precision(onnx.load(str(src))) == "FP32"
    onnx_fp16.to_fp16(src, tmp_path / "fp16.onnx")
    assert trt_build.graph_precision(onnx.load(str(tmp_path / "fp16.onnx"))) == "FP16"

    class Reader:
        def __init__(self) -> None:
            self.batches = iter([{"image": np.random.default_rng(2).random((2, 8, 8, 3)).astype(np.float32)}])

        def get_next(self) -> Any:
            return next(self.batches, None)

    q.quantize_static(
        str(src),
        str(tmp_path / "int8.onnx"),
        Reader(),
        quant_format=q.QuantFormat.QDQ,
        activation_type=q.QuantType.QInt8,
        weight_type=q.QuantType.QInt8,
    )
    assert trt_build.graph_precision(onnx.load(str(tmp_path / "int8.onnx"))) == "INT8"
    trt_build.check_graph_precision(tmp_path / "fp16.onnx", "FP16")
    with pytest.raises(ConversionError, match="precision is FP16 but the ONNX graph .* computes in FP32"):
        trt_build.check_graph_precision(src, "FP16")


@pytest.mark.parametrize(
    ("version_compatible", "hardware", "builder", "level"),
    [
        (False, None, (), None),
        (True, None, ("VERSION_COMPATIBLE",), None),
        (False, "AmperePlus", (), "AMPERE_PLUS"),
        (True, "AmperePlus", ("VERSION_COMPATIBLE",), "AMPERE_PLUS"),
    ],
)
def test_plan_flags_are_strongly_typed_without_precision_flags(
    version_compatible: bool, hardware: str | None, builder: tuple[str, ...], level: str | None
) -> None:
    flags = trt_build.plan_flags(version_compatible=version_compatible, hardware_compatibility=hardware)
    assert flags.network == ("STRONGLY_TYPED",)
    assert flags.builder == builder and flags.hardware_compatibility == level
    assert not {"FP16", "INT8", "BF16", "TF32"} & set(flags.builder)
    report = {"network": ["STRONGLY_TYPED"], "builder": list(builder), "hardwareCompatibility": level}
    assert flags.as_report() == report


def test_plan_flags_reject_an_unknown_hardware_level() -> None:
    with pytest.raises(ConversionError, match="hardwareCompatibility 'Turing' is unknown; use AmperePlus"):
        trt_build.plan_flags(version_compatible=False, hardware_compatibility="Turing")


@pytest.mark.parametrize(("version", "major"), [("10.7.0", 10), ("10.13.3.9", 10), ("11.0.0", 11)])
def test_tensorrt_majors_that_build(version: str, major: int) -> None:
    assert trt_build.tensorrt_major(version) == major


@pytest.mark.parametrize("version", ["8.6.1", "9.3.0", "12.0.0", "x.y"])
def test_tensorrt_majors_that_do_not(version: str) -> None:
    with pytest.raises(ConversionError, match="TensorRT"):
        trt_build.tensorrt_major(version)


# --------------------------------------------------------------------------- ORT TensorRT engines in the Job


def test_engine_options_are_the_configs_with_local_caches(tmp_path: Path) -> None:
    from edgeopt.artifact import TensorInfo
    from edgeopt.converter import ort_trt_engines
    from edgeopt.spec import parse_manifest
    from edgeopt.triton.config import trt_accelerator_params

    model = parse_manifest(
        {
            "apiVersion": "edgeopt.io/v1alpha1",
            "kind": "OptimizedModel",
            "metadata": {"name": "m"},
            "spec": {
                "source": {"uri": "file:///s", "format": "SavedModel"},
                "target": {"repository": "file:///r", "backend": "onnxruntime", "device": "GPU"},
                "tensorrt": {"enabled": True, "maxWorkspaceSizeBytes": 1 << 28},
            },
        }
    )
    params = trt_accelerator_params(model, [TensorInfo("x", "FP32", [-1, 4, 4, 3])], 8)
    options = ort_trt_engines.ort_options(params, tmp_path)
    assert options["trt_max_workspace_size"] == str(1 << 28) and "max_workspace_size_bytes" not in options
    assert options["trt_engine_cache_path"] == str(tmp_path / "engines")
    assert options["trt_timing_cache_path"] == str(tmp_path / "timing")
    assert options["trt_profile_max_shapes"] == "x:8x4x4x3" and "precision_mode" not in options


def test_zero_feeds_fill_the_batch_and_refuse_unknown_dims() -> None:
    from edgeopt.artifact import TensorInfo
    from edgeopt.converter.ort_trt_engines import zero_feeds

    feeds = zero_feeds([TensorInfo("x", "FP16", [-1, 2, 3]), TensorInfo("n", "INT64", [-1])], 4)
    assert feeds["x"].shape == (4, 2, 3) and feeds["x"].dtype == np.float16 and feeds["n"].shape == (4,)
    with pytest.raises(ConversionError, match="declare full shapes .* tensorrt.buildEngines: false"):
        zero_feeds([TensorInfo("x", "FP32", [-1, -1, 3])], 1)
