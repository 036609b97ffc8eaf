"""The classic y = a + x checkpoint (resource variable a = 5.0) through the real pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeopt.converter.pipeline import convert_model
from tests.tf.conftest import add_source, make_model

pytestmark = pytest.mark.tf


@pytest.mark.parametrize("graph", ["my_graph.pb", "my_graph.pbtxt", "test_model.meta"])
def test_freeze_and_optimize_leave_placeholder_const_addv2_and_give_six(add_model_dir: Path, graph: str) -> None:
    import tensorflow as tf

    from edgeopt.converter.freeze import freeze
    from edgeopt.converter.load import load_model
    from edgeopt.converter.optimize import optimize
    from edgeopt.spec import DEFAULT_TRANSFORMS

    model = make_model("add", add_source(add_model_dir, graph), add_model_dir / "repo")
    loaded = load_model(model)
    try:
        frozen = freeze(loaded)
        optimized, _ = optimize(frozen, list(DEFAULT_TRANSFORMS))
    finally:
        loaded.close()
    assert sorted(n.op for n in optimized.graph_def.node) == ["AddV2", "Const", "Placeholder"]
    graph_obj = tf.Graph()
    with graph_obj.as_default():
        tf.graph_util.import_graph_def(optimized.graph_def, name="")
    with tf.compat.v1.Session(graph=graph_obj) as sess:
        y = sess.run("y:0", {"x:0": np.array([[1.0]], np.float32)})
    assert y.tolist() == [[6.0]]


def test_convert_model_gives_a_savedmodel_with_the_real_signature(add_model_dir: Path, tmp_path: Path) -> None:
    import tensorflow as tf

    model = make_model("add", add_source(add_model_dir), tmp_path / "repo")
    artifact = convert_model(model, tmp_path / "work")
    assert artifact.signature_key == "serving_default"
    assert [(t.name, t.dtype, t.shape) for t in artifact.inputs] == [("x", "FP32", [-1, 1])]
    assert [(t.name, t.dtype, t.shape) for t in artifact.outputs] == [("y", "FP32", [-1, 1])]
    assert not artifact.trt_applied and artifact.precision is None
    served = tf.saved_model.load(str(artifact.savedmodel_dir)).signatures["serving_default"]
    assert served(x=tf.constant([[1.0], [2.0]]))["y"].numpy().tolist() == [[6.0], [7.0]]
    report = artifact.report
    assert report["ops"]["before"]["total"] == 4  # Placeholder, Const, Identity (ReadVariableOp), AddV2
    assert report["ops"]["after"]["byType"] == {"AddV2": 1, "Const": 1, "Placeholder": 1}
    assert [s["name"] for s in report["stages"]] == [
        "load",
        "freeze",
        "optimize",
        "export",
        "tftrt",
        "validate",
        "report",
    ]
    assert all(s["peak_rss_mib"] > 0 for s in report["stages"] if s["status"] == "ok")
    summary = report["summary"]
    assert summary["opsBefore"] == 4 and summary["opsAfter"] == 3
    assert summary["maxAbsError"] == 0.0 and summary["trtEngines"] == 0
    assert summary["tensorflow"].startswith("2.17")
    assert (artifact.savedmodel_dir.parent / "report.json").is_file()


@pytest.mark.parametrize("graph", ["my_graph.pb", "test_model.meta"])
def test_ref_variables_freeze_too(tmp_path: Path, graph: str) -> None:
    import tensorflow as tf

    from edgeopt.converter.load import parse_graph_def
    from edgeopt_dev.samples import write_add_checkpoint

    write_add_checkpoint(tmp_path / "model", resource_variable=False)
    ops = {n.op for n in parse_graph_def(tmp_path / "model" / "my_graph.pb").node}
    assert "VariableV2" in ops and "VarHandleOp" not in ops
    model = make_model("add", add_source(tmp_path / "model", graph), tmp_path / "repo")
    artifact = convert_model(model, tmp_path / "work")
    assert artifact.report["ops"]["after"]["byType"] == {"AddV2": 1, "Const": 1, "Placeholder": 1}
    served = tf.saved_model.load(str(artifact.savedmodel_dir)).signatures["serving_default"]
    assert served(x=tf.constant([[1.0]]))["y"].numpy().tolist() == [[6.0]]
