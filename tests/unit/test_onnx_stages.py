"""The pure parts of the ONNX stages on hand-built ONNX graphs: no TensorFlow, no Triton."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgeopt.converter import onnx_export, onnx_validate
from edgeopt.converter.graph_model import Endpoint, FrozenModel
from edgeopt.errors import ConversionError, ValidationError
from edgeopt.spec import Validation

onnx = pytest.importorskip("onnx")
helper = onnx.helper


def graph(op: str = "Relu", domain: str = "") -> Any:
    x = helper.make_tensor_value_info("x:0", onnx.TensorProto.FLOAT, ["unk__1", 4])
    y = helper.make_tensor_value_info("y:0", onnx.TensorProto.FLOAT, ["unk__2", 4])
    node = helper.make_node(op, ["x:0"], ["y:0"], name="n", domain=domain)
    imports = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=imports)


def test_unknown_ops_finds_what_tf2onnx_left_behind() -> None:
    assert not onnx_export.unknown_ops(graph("Relu"))
    assert onnx_export.unknown_ops(graph("StringToHashBucketFast")) == {"StringToHashBucketFast": 1}
    assert onnx_export.unknown_ops(graph("Foo", domain="tf")) == {"tf.Foo": 1}


def test_signature_keys_and_batch_dim() -> None:
    model = graph()
    frozen = FrozenModel(None, [Endpoint("x", "x:0", "FP32", [-1, 4])], [Endpoint("y", "y:0", "FP32", [-1, 4])])
    onnx_export._rename_tensors(model, {"x:0": "x", "y:0": "y"})
    onnx_export._name_batch_dim(model, [*frozen.inputs, *frozen.outputs])
    inputs, outputs = onnx_export.signature(model)
    assert [(t.name, t.dtype, t.shape) for t in inputs] == [("x", "FP32", [-1, 4])]
    assert [(t.name, t.shape) for t in outputs] == [("y", [-1, 4])]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert list(model.graph.node[0].input) == ["x"] and list(model.graph.node[0].output) == ["y"]
    onnx_export.check_signature(inputs, outputs, frozen)
    fixed = onnx_export.signature(graph())  # names still x:0 / y:0
    with pytest.raises(ConversionError, match="do not match the signature"):
        onnx_export.check_signature(*fixed, frozen)


def test_rename_refuses_a_clash() -> None:
    with pytest.raises(ConversionError, match="already exist"):
        onnx_export._rename_tensors(graph(), {"x:0": "y:0"})


def test_int8_gates_top1_and_tolerance() -> None:
    ref = {"p": np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], np.float32)}
    close = {"p": ref["p"] + 0.05}
    flipped = {"p": ref["p"][:, ::-1].copy()}
    v = Validation(int8_rtol=0.1, int8_atol=0.1, min_top1_agreement=0.75)
    ok = onnx_validate.compare(ref, close, v, int8=True)
    assert ok["top1Agreement"] == {"p": 1.0} and ok["rtol"] == 0.1
    with pytest.raises(ValidationError, match="top-1 class on only 0%"):
        onnx_validate.compare(ref, flipped, v, int8=True)
    with pytest.raises(ValidationError, match="beyond tolerance"):  # FP32 keeps the strict tolerances
        onnx_validate.compare(ref, close, v, int8=False)
    assert onnx_validate.top1_agreement({"s": np.zeros((3,), np.float32)}, {"s": np.zeros((3,))}) == {}


@pytest.mark.parametrize(
    "node,layer",
    [
        ("StatefulPartitionedCall/convnext_1/stage_0_dw_conv_1/StatefulPartitionedCall", "stage_0_dw_conv_1"),
        ("model/lstm/while/body/TensorListReserve", "lstm"),
        ("StringToHashBucketFast", None),
        ("StatefulPartitionedCall/Conv2D", None),
    ],
)
def test_layer_of_reads_the_keras_scope(node: str, layer: str | None) -> None:
    assert onnx_export.layer_of(node) == layer


def test_refusal_names_op_count_and_layer() -> None:
    model = graph("StringToHashBucketFast")
    model.graph.node[0].name = "model/hash_layer/StringToHashBucketFast"
    text = onnx_export.unconvertible(model, onnx_export.unknown_ops(model))
    assert text == "StringToHashBucketFast in layer(s) hash_layer"


SOFTMAX = np.array([[0.001, 0.004, 0.015, 0.03], [0.02, 0.002, 0.01, 0.04]], np.float32)


@pytest.mark.parametrize(
    "got,want",
    [
        (SOFTMAX, 1.0),  # equal
        (SOFTMAX * 1.02 + 0.001, 1.0),  # off, but following the original
        (np.zeros_like(SOFTMAX), 0.0),  # collapsed: all zero
        (np.full_like(SOFTMAX, 0.01), 0.0),  # collapsed: one value
        (SOFTMAX[:, ::-1].copy(), None),  # reversed: correlates poorly (some value below 0)
    ],
)
def test_correlation_tells_a_collapsed_output_from_a_good_one(got: np.ndarray, want: float | None) -> None:
    from edgeopt.converter.validate import correlation

    found = correlation(SOFTMAX, got, rtol=1e-3, atol=1e-4)
    assert found is not None
    if want is None:
        assert found["min"] < 0
    else:
        assert found["min"] == pytest.approx(want, abs=1e-6)


def test_correlation_skips_what_it_cannot_judge() -> None:
    from edgeopt.converter.validate import correlation

    assert correlation(np.float32(1.0), np.float32(0.0), rtol=0, atol=0) is None  # one value
    assert correlation(np.array([1, 2]), np.array([2, 1]), rtol=0, atol=0) is None  # not floats
    flat = np.ones((2, 4), np.float32)  # a constant original: the elementwise check judges it
    assert correlation(flat, flat * 1.5, rtol=0, atol=0) == {"min": 1.0, "sample": -1}
    scores = np.array([[0.2], [0.9], [0.4]], np.float32)  # one value per sample: correlated across the batch
    assert correlation(scores, np.zeros_like(scores), rtol=0, atol=0)["min"] == 0.0


def test_a_collapsed_int8_output_never_passes() -> None:
    """The issue's case: top-1 gate off, int8Atol above every probability; only the correlation catches it."""
    v = Validation(int8_rtol=0.1, int8_atol=0.05, min_top1_agreement=0.0)
    with pytest.raises(ValidationError, match=r"'p' does not follow the original: sample 0 correlates 0.000.*FP32"):
        onnx_validate.compare({"p": SOFTMAX}, {"p": np.zeros_like(SOFTMAX)}, v, int8=True, remedy="publish FP32")
    ok = onnx_validate.compare({"p": SOFTMAX}, {"p": SOFTMAX + 0.001}, v, int8=True)
    assert ok["correlation"] == {"p": 1.0} and ok["minCorrelation"] == 0.99


def _classifier(sigmoid_body: bool = True) -> Any:
    """x → (x·sigmoid(x)) → Conv → Relu → GlobalAveragePool → Flatten → MatMul → Add → Softmax → y."""
    t = onnx.TensorProto.FLOAT
    inits = [
        helper.make_tensor("w", t, [4, 3, 1, 1], np.ones(12, np.float32)),
        helper.make_tensor("fc", t, [4, 2], np.ones(8, np.float32)),
        helper.make_tensor("b", t, [2], np.zeros(2, np.float32)),
    ]
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["sg"], name="swish/sigmoid"),
        helper.make_node("Mul", ["x", "sg"], ["sw"], name="swish/mul"),
        helper.make_node("Conv", ["sw" if sigmoid_body else "x", "w"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "fc"], ["m"], name="dense/matmul"),
        helper.make_node("Add", ["m", "b"], ["l"], name="dense/bias"),
        helper.make_node("Softmax", ["l"], ["y"], name="probs"),
    ]
    x = helper.make_tensor_value_info("x", t, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", t, [1, 2])
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits))


def test_float_nodes_are_the_head_and_every_softmax() -> None:
    from edgeopt.converter.onnx_quantize import float_nodes

    assert float_nodes(_classifier()) == [{"name": "dense/bias", "op": "Add"}, {"name": "probs", "op": "Softmax"}]
    # No MatMul/Conv between an output and the input: nothing heavy behind it, no head to keep.
    assert float_nodes(graph("Relu")) == []
