"""The op policy on hand-built protos: what it refuses, what it lets through, and the saver exception."""

from __future__ import annotations

from typing import Any

import pytest

from edgeopt.converter import policy
from edgeopt.errors import InputError

pytestmark = pytest.mark.tf


def _graph(*nodes: tuple[str, str], functions: dict[str, list[tuple[str, str]]] | None = None) -> Any:
    import tensorflow as tf

    g = tf.compat.v1.GraphDef()
    for name, op in nodes:
        g.node.add(name=name, op=op)
    for fname, body in (functions or {}).items():
        fn = g.library.function.add()
        fn.signature.name = fname
        for name, op in body:
            fn.node_def.add(name=name, op=op)
    return g


def _ops(refusals: list[policy.Refusal]) -> list[tuple[str, str, str | None]]:
    return [(r.op, r.node, r.function) for r in refusals]


@pytest.mark.parametrize(
    "op",
    [
        "WriteFile",
        "ReadFile",
        "MatchingFiles",
        "SaveV2",
        "RestoreV2",
        "MergeV2Checkpoints",
        "PyFunc",
        "EagerPyFunc",
        "PyFuncStateless",
        "TFRecordDataset",
        "TextLineReaderV2",
        "ReaderReadV2",
        "IteratorGetNext",
        "MakeIterator",
        "ImmutableConst",
        "WriteScalarSummary",
        "CreateSummaryFileWriter",
        "RpcCall",
        "CollectiveReduceV2",
        "_Send",
        "DebugIdentityV2",
        "InitializeTableFromTextFileV2",
        "SqlDataset",
        "LoadAndRemapMatrix",
        "TPUExecute",
    ],
)
def test_refused_ops(op: str) -> None:
    assert policy.denial(op) is not None
    assert _ops(policy.refusals(_graph(("n", op)))) == [(op, "n", None)]


@pytest.mark.parametrize(
    "op",
    [
        "Conv2D",
        "MatMul",
        "Identity",
        "Snapshot",
        "StringJoin",
        "ShardedFilename",
        "Print",
        "NoOp",
        "FusedBatchNormV3",
        "StatefulPartitionedCall",
        "Const",
        "Placeholder",
        "AudioSummaryV2",
    ],
)
def test_ordinary_ops_pass(op: str) -> None:
    assert policy.denial(op) is None


def test_every_refusal_names_op_node_function_and_the_admin_setting() -> None:
    g = _graph(("call", "f"), functions={"f": [("inner", "g")], "g": [("deep", "WriteFile")]})
    with pytest.raises(InputError) as info:
        policy.check(g, "model.pb")
    msg = str(info.value)
    assert "refused op WriteFile" in msg and "node 'deep'" in msg and "in function 'g'" in msg
    assert "EDGEOPT_CONVERTER_ALLOWED_OPS=WriteFile" in msg and "cannot" in msg


def test_an_unused_library_function_is_checked_too() -> None:
    assert _ops(policy.refusals(_graph(("x", "Placeholder"), functions={"unused": [("w", "WriteFile")]}))) == [
        ("WriteFile", "w", "unused")
    ]


def test_a_function_valued_attribute_naming_an_op_is_checked() -> None:
    """PartitionedCall(f=WriteFile) runs the primitive op as a function: the attr must be checked."""
    g = _graph(("call", "PartitionedCall"))
    g.node[0].attr["f"].func.name = "WriteFile"
    assert _ops(policy.refusals(g)) == [("WriteFile", "call", None)]
    g = _graph(("case", "Case"))
    g.node[0].attr["branches"].list.func.add(name="ReadFile")
    assert _ops(policy.refusals(g)) == [("ReadFile", "case", None)]


def test_attribute_dependent_ops() -> None:
    g = _graph(("p", "PrintV2"), ("q", "PrintV2"), ("d", "DecodeProtoV2"))
    g.node[0].attr["output_stream"].s = b"file:///tmp/leak"
    g.node[1].attr["output_stream"].s = b"stderr"
    g.node[2].attr["descriptor_source"].s = b"/etc/descriptors.bin"
    assert [r.node for r in policy.refusals(g)] == ["p", "d"]


def test_unknown_ops_are_refused() -> None:
    g = _graph(("c", "MyCustomOpThatLoadsASharedLibrary"))
    assert policy.refusals(g) == []  # without a registry, the name alone is not on the list
    found = policy.refusals(g, known_op=policy._tf_knows_op)
    assert found and "not a TensorFlow 2.17 op" in found[0].why


def test_admin_allowed_ops() -> None:
    g = _graph(("r", "ReadFile"))
    assert policy.refusals(g, allowed=policy.allowed_ops({"EDGEOPT_CONVERTER_ALLOWED_OPS": " ReadFile , X"})) == []


def test_the_seed_saver_is_cut_out_and_nothing_else() -> None:
    """The guide writes its graph after tf.train.Saver(): save/ nodes go, the model stays."""
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape=(), name="x")
        a = tf.compat.v1.Variable(5.0, name="a")
        tf.add(a, x, name="y")
        tf.compat.v1.train.Saver()
    gd = g.as_graph_def()
    assert any(n.op == "SaveV2" for n in gd.node) and any(n.op == "RestoreV2" for n in gd.node)
    stripped, removed = policy.strip_saver(gd, "my_graph.pb")
    assert removed > 0 and not policy.refusals(stripped, known_op=policy._tf_knows_op)
    assert {"x", "a", "y"} <= {n.name for n in stripped.node}
    assert all(not n.name.startswith("save/") for n in stripped.node)


def test_a_node_that_uses_the_saver_is_refused() -> None:
    g = _graph(("save/RestoreV2", "RestoreV2"), ("y", "Identity"))
    g.node[1].input.append("save/RestoreV2:0")
    with pytest.raises(InputError, match="uses the checkpoint saver's node 'save/RestoreV2'"):
        policy.strip_saver(g, "g.pb")


def test_save_ops_outside_a_saver_scope_stay_refused() -> None:
    g = _graph(("evil/SaveV2", "SaveV2"), ("saver_thing", "RestoreV2"))
    stripped, removed = policy.strip_saver(g, "g.pb")
    assert removed == 0 and [r.node for r in policy.refusals(stripped)] == ["evil/SaveV2", "saver_thing"]


def test_tf1_saved_model_restore_must_read_the_saver_filename() -> None:
    from tensorflow.core.protobuf import meta_graph_pb2

    meta = meta_graph_pb2.MetaGraphDef()
    meta.saver_def.filename_tensor_name = "save/Const:0"
    meta.graph_def.node.add(name="save/Const", op="Const")
    meta.graph_def.node.add(name="save/RestoreV2", op="RestoreV2", input=["save/Const"])
    nodes, funcs = policy.saved_model_saver_exemptions(meta, "sm")
    assert "save/RestoreV2" in nodes and not policy.refusals(meta.graph_def, exempt_nodes=nodes)
    meta.graph_def.node.add(name="save/evil_path", op="Const")
    meta.graph_def.node.add(name="save/RestoreV2_1", op="RestoreV2", input=["save/evil_path"])
    with pytest.raises(InputError, match="does not read from the saver's filename tensor"):
        policy.saved_model_saver_exemptions(meta, "sm")


def test_a_tf2_saved_model_passes_with_only_its_saver_exempt(tmp_path: Any) -> None:
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    class M(tf.Module):
        def __init__(self) -> None:
            self.v = tf.Variable([1.0, 2.0])

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        def serve(self, x: Any) -> Any:
            return {"y": x * self.v}

    m = M()
    tf.saved_model.save(m, str(tmp_path / "sm"), signatures={"serving_default": m.serve})
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((tmp_path / "sm" / "saved_model.pb").read_bytes())
    (meta,) = saved.meta_graphs
    assert policy.refusals(meta.graph_def), "the saver's SaveV2/RestoreV2 are there"
    nodes, funcs = policy.saved_model_saver_exemptions(meta, "sm")
    assert funcs and not policy.refusals(meta.graph_def, exempt_nodes=nodes, exempt_functions=funcs)
