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
