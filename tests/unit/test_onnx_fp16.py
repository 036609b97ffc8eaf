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
    report = {"network": ["STRONGLY_TYPED"], "builder": list(builder), "cleared": [], "hardwareCompatibility": level}
    assert flags.as_report() == report


@pytest.mark.parametrize(("fp32_compute", "cleared"), [(True, ("TF32",)), (False, ())])
def test_a_plan_with_fp32_convolutions_in_an_fp16_graph_clears_tf32(fp32_compute: bool, cleared: tuple) -> None:
    flags = trt_build.plan_flags(version_compatible=False, hardware_compatibility=None, fp32_compute=fp32_compute)
    assert flags.cleared == cleared and not {"FP16", "INT8", "BF16"} & set(flags.builder)


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


# --------------------------------------------------------------------------- what a GPU computes, and the prefix


def _chain(path: Path, depth: int = 8, width: int = 16) -> Path:
    """x [N,width] → (MatMul → Relu) x depth → y: ``depth`` compute nodes in a row."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    nodes, inits, last = [], [], "x"
    for i in range(depth):
        inits.append(
            numpy_helper.from_array(rng.normal(0, 1.2 / np.sqrt(width), (width, width)).astype(np.float32), f"w{i}")
        )
        nodes.append(helper.make_node("MatMul", [last, f"w{i}"], [f"m{i}"], name=f"mm{i}"))
        nodes.append(helper.make_node("Relu", [f"m{i}"], [f"r{i}"], name=f"relu{i}"))
        last = f"r{i}"
    nodes.append(helper.make_node("Identity", [last], ["y"], name="out"))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def _run_model(model: Any, feeds: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, feeds)[0])


def test_gpu_emulation_rounds_every_fp16_tensor_like_numpy(tmp_path: Path) -> None:
    """The emulation of a MatMul→Relu chain equals numpy doing FP32 arithmetic on FP16-stored tensors."""
    src = onnx.load(str(_chain(tmp_path / "chain.onnx", depth=3)))
    half = onnx_fp16.convert(src)
    x = np.random.default_rng(6).normal(size=(4, 16)).astype(np.float32)
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in src.graph.initializer}
    want = x.astype(np.float16).astype(np.float32)  # the input cast
    for i in range(3):
        w = weights[f"w{i}"].astype(np.float16).astype(np.float32)
        want = (want @ w).astype(np.float16).astype(np.float32)  # MatMul output stored in FP16
        want = np.maximum(want, 0)  # Relu of FP16 values is exact
    got = _run_model(onnx_fp16.storage_emulation(half), {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=0)  # FP32 summation order only
    exact = x
    for i in range(3):
        exact = np.maximum(exact @ weights[f"w{i}"], 0)
    assert np.abs(got - exact).max() > 1e-4  # it did round


def test_fp32_prefix_reads_fp32_all_the_way(tmp_path: Path) -> None:
    """The converter casts each FP32 node's output to FP16 and back; drop_round_trips removes that."""
    src = onnx.load(str(_chain(tmp_path / "chain.onnx")))
    kept = onnx_fp16.prefix(src, 2)
    assert kept == ["mm0", "relu0", "mm1"]
    half = onnx_fp16.convert(src, kept)
    producer = {o: n for n in half.graph.node for o in n.output}
    for name in kept:  # every input of a prefix node comes from FP32 nodes, never through an FP16 cast
        node = next(n for n in half.graph.node if n.name == name)
        for inp in node.input:
            before = producer.get(inp)
            assert before is None or before.op_type != "Cast", (name, inp)
    x = np.random.default_rng(7).normal(size=(4, 16)).astype(np.float32)
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in src.graph.initializer}
    m1 = np.maximum(x @ weights["w0"], 0) @ weights["w1"]  # the prefix, in FP32
    mm1_out = next(n for n in half.graph.node if n.name == "mm1").output[0]  # the converter renamed it
    emulated = onnx_fp16.storage_emulation(half)
    del emulated.graph.output[:]  # read the prefix's last output directly
    emulated.graph.output.extend([onnx.helper.make_tensor_value_info(mm1_out, onnx.TensorProto.FLOAT, None)])
    np.testing.assert_allclose(_run_model(emulated, {"x": x}), m1, rtol=1e-5, atol=1e-6)
    assert onnx_fp16.drop_round_trips(half) == 0  # nothing left to drop
    onnx.save_model(half, str(tmp_path / "prefix.onnx"))
    assert trt_build.fp32_compute_nodes(tmp_path / "prefix.onnx") == 2  # what the plan builder sees: no TF32
    onnx.save_model(onnx_fp16.convert(src), str(tmp_path / "half.onnx"))
    assert trt_build.fp32_compute_nodes(tmp_path / "half.onnx") == 0


@pytest.mark.parametrize(
    ("total", "sizes"), [(1, [0]), (3, [0]), (4, [0, 1]), (8, [0, 1, 2]), (54, [0, 1, 2, 4, 8, 13])]
)
def test_prefix_sizes_double_up_to_a_quarter(total: int, sizes: list[int]) -> None:
    assert onnx_fp16.prefix_sizes(total) == sizes


def test_choose_prefix_takes_the_first_within_headroom_else_the_least() -> None:
    calls: list[int] = []

    def falling(k: int) -> float:
        calls.append(k)
        return 1.2 / (1 + k)

    assert onnx_fp16.choose_prefix(falling, [0, 1, 2, 4], headroom=0.5)[0] == 2
    assert calls == [0, 1, 2]  # stops at the first that fits
    k, tried = onnx_fp16.choose_prefix(lambda k: [0.9, 0.7, float("inf"), 0.8][k], [0, 1, 2, 3], headroom=0.5)
    assert k == 1 and [t[0] for t in tried] == [0, 1, 2, 3]


def test_to_fp16_with_a_check_records_what_it_tried(tmp_path: Path) -> None:
    """A real check: tolerance use of the emulated graph against the FP32 graph's answers."""
    from edgeopt.converter import onnx_validate, validate

    src = _chain(tmp_path / "chain.onnx", depth=8)
    x = {"x": np.random.default_rng(8).normal(size=(16, 16)).astype(np.float32)}
    want = {"y": _run_model(onnx.load(str(src)), x)}
    seen: list[float] = []

    def use_of(atol: float) -> Any:
        def use(half: Any) -> float:
            runner, why = onnx_validate.gpu_emulation_runner(half)
            assert why is None
            seen.append(validate.tolerance_use(want, runner(x), rtol=0.0, atol=atol))
            return seen[-1]

        return use

    loose = onnx_fp16.to_fp16(src, tmp_path / "loose.onnx", use_of(1.0))["fp32Prefix"]
    assert loose["computeNodes"] == 0 and [t["computeNodes"] for t in loose["tried"]] == [0]
    seen.clear()
    tight = onnx_fp16.to_fp16(src, tmp_path / "tight.onnx", use_of(1e-9))["fp32Prefix"]
    assert [t["computeNodes"] for t in tight["tried"]] == [0, 1, 2]  # nothing fits: all tried
    assert tight["computeNodes"] == [0, 1, 2][int(np.argmin(seen))] and tight["ofComputeNodes"] == 8
    assert (
        tight["through"] == onnx_fp16.prefix(onnx.load(str(src)), tight["computeNodes"])[-1]
        if tight["computeNodes"]
        else True
    )
    assert seen[2] < seen[0]  # a longer FP32 prefix is closer to FP32


def test_the_gpu_gate_names_the_prefix_and_the_ways_out() -> None:
    from edgeopt.converter import onnx_validate
    from edgeopt.errors import ValidationError
    from edgeopt.spec import Validation

    ref = {"logits": np.array([[1.0, 2.0]], dtype=np.float32)}
    ok = onnx_validate.compare_on_gpu_emulation(ref, {"logits": ref["logits"] + 0.05}, Validation(), {})
    assert 0.3 < ok["toleranceUse"] < 0.5
    with pytest.raises(
        ValidationError, match=r"on a GPU, which stores every FP16 tensor in FP16 .* first 4 of 54 .*publish FP32"
    ):
        onnx_validate.compare_on_gpu_emulation(
            ref, {"logits": ref["logits"] + 0.5}, Validation(), {"computeNodes": 4, "ofComputeNodes": 54}
        )


def test_tolerance_use_is_infinite_on_nan() -> None:
    from edgeopt.converter import validate

    ref = {"y": np.ones((2, 2), np.float32)}
    assert validate.tolerance_use(ref, {"y": ref["y"] * 1.1}, rtol=0.0, atol=0.2) == pytest.approx(0.5)
    assert validate.tolerance_use(ref, {"y": np.full((2, 2), np.nan, np.float32)}, rtol=0.1, atol=0.1) == float("inf")
