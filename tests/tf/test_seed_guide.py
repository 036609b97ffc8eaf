"""The seed guide's own steps on its own graphs: a scalar y = a + x, keep_prob, XLA, reusing the graph.

Every test builds its model with real TF 2.17 here and goes through the
real pipeline (or the real CLI), comparing against the original graph.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.converter.pipeline import convert_model
from edgeopt.errors import ConversionError, InputError
from tests.tf.conftest import make_model, manifest_dict, write_manifest

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def guide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeopt_dev.samples import write_guide_checkpoint

    d = tmp_path_factory.mktemp("guide")
    write_guide_checkpoint(d)
    return d


@pytest.fixture(scope="module")
def seg(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from edgeopt_dev.samples import write_segmentation_checkpoint

    return write_segmentation_checkpoint(tmp_path_factory.mktemp("seg"))


def _source(info: dict[str, Any], **extra: Any) -> dict[str, Any]:
    keys = ("format", "graph", "checkpoint", "inputs", "outputs")
    return {"uri": f"file://{info['dir']}", **{k: info[k] for k in keys}, **extra}


def _guide_snippet(graph_file: Path) -> tuple[list[str], float]:
    """The guide's step 5.2 code, in TF1 terms, unchanged otherwise."""
    import tensorflow as tf

    with tf.io.gfile.GFile(str(graph_file), "rb") as f:
        graph_def_optimized = tf.compat.v1.GraphDef()
        graph_def_optimized.ParseFromString(f.read())
    G = tf.Graph()
    with tf.compat.v1.Session(graph=G) as sess:
        (y,) = tf.import_graph_def(graph_def_optimized, return_elements=["y:0"])
        names = [op.name for op in G.get_operations()]
        x = G.get_tensor_by_name("import/x:0")
        out = sess.run(y, feed_dict={x: 1.0})
    return names, float(out)


def test_scalar_guide_graph_converts_publishes_and_its_graph_is_reusable(guide_dir: Path, tmp_path: Path) -> None:
    from edgeopt.cli import main
    from edgeopt_dev.samples import write_guide_checkpoint

    info = write_guide_checkpoint(tmp_path / "model")
    repo = tmp_path / "repo"
    manifest = manifest_dict("guide", _source(info), repo, target={"repository": f"file://{repo}", "maxBatchSize": 0})
    path = write_manifest(tmp_path / "guide.yaml", manifest)
    code = main(["convert", "-f", str(path), "-o", str(tmp_path / "out"), "--termination-log", str(tmp_path / "t")])
    assert code == 0
    summary = json.loads((tmp_path / "t").read_text())
    assert summary["ok"] and summary["version"] == 1
    version = repo / "guide" / "1"
    for graph in (tmp_path / "out" / "optimized_graph.pb", version / "optimized_graph.pb"):
        assert _guide_snippet(graph) == (["import/x", "import/a", "import/y"], 6.0)
    config = (repo / "guide" / "config.pbtxt").read_text()
    assert "max_batch_size: 0" in config and "dims: [ 1 ]" in config
    import tensorflow as tf

    served = tf.saved_model.load(str(version / "model.savedmodel")).signatures["serving_default"]
    assert float(served(x=tf.constant(1.0))["y"].numpy()) == 6.0


def test_segmentation_graph_needs_keep_prob_and_says_so(seg: dict[str, Any], tmp_path: Path) -> None:
    model = make_model("seg", _source(seg), tmp_path / "repo")
    with pytest.raises(InputError) as err:
        convert_model(model, tmp_path / "work")
    text = str(err.value)
    assert "'keep_prob'" in text and "float32" in text and "Reshape_3 <-" in text
    assert "spec.source.constants" in text and "spec.source.inputs" in text


def test_keep_prob_constant_folds_dropout_and_answers_like_keep_prob_1(seg: dict[str, Any], tmp_path: Path) -> None:
    import tensorflow as tf

    model = make_model("seg", _source(seg, constants={"keep_prob": 1.0}), tmp_path / "repo")
    artifact = convert_model(model, tmp_path / "work")
    load = next(s for s in artifact.report["stages"] if s["name"] == "load")
    assert load["details"]["constants"] == [
        {"name": "keep_prob", "dtype": "float32", "value": 1.0, "from": "spec.source.constants"}
    ]
    after = artifact.report["ops"]["after"]["byType"]
    assert "Placeholder" in after and after["Placeholder"] == 1  # correct_label and keep_prob are gone
    x = np.random.default_rng(1).standard_normal((3, 8, 8, 3)).astype(np.float32)
    g = tf.Graph()
    with g.as_default():
        saver = tf.compat.v1.train.import_meta_graph(str(Path(seg["dir"]) / "segmentation_model.meta"))
    with tf.compat.v1.Session(graph=g) as sess:
        saver.restore(sess, str(Path(seg["dir"]) / "segmentation_model"))
        want = sess.run("Reshape_3:0", {"image_input:0": x, "keep_prob:0": 1.0})
    served = tf.saved_model.load(str(artifact.savedmodel_dir)).signatures["serving_default"]
    np.testing.assert_allclose(served(image_input=tf.constant(x))["Reshape_3"].numpy(), want, rtol=1e-5, atol=1e-5)


def test_unknown_constant_names_the_placeholders(seg: dict[str, Any], tmp_path: Path) -> None:
    model = make_model("seg", _source(seg, constants={"keep_probability": 1.0}), tmp_path / "repo")
    with pytest.raises(InputError, match="keep_probability.*image_input, keep_prob, correct_label"):
        convert_model(model, tmp_path / "work")


def test_placeholder_with_default_and_learning_phase_bind_themselves(tmp_path: Path) -> None:
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        phase = tf.compat.v1.placeholder_with_default(False, [], name="phase_train")
        learning = tf.compat.v1.placeholder(tf.bool, [], name="keras_learning_phase")
        h = tf.where(phase, x * 2.0, x + 1.0)
        tf.where(learning, h * 0.0, h * 3.0, name="y")
    tf.io.write_graph(g.as_graph_def(), str(tmp_path), "flags.pb", as_text=False)
    source = {
        "uri": f"file://{tmp_path}",
        "format": "FrozenGraph",
        "graph": "flags.pb",
        "inputs": [{"name": "x", "shape": [-1, 3]}],
        "outputs": ["y"],
    }
    artifact = convert_model(make_model("flags", source, tmp_path / "repo"), tmp_path / "work")
    load = next(s for s in artifact.report["stages"] if s["name"] == "load")
    assert {c["name"]: c["from"] for c in load["details"]["constants"]} == {
        "phase_train": "PlaceholderWithDefault",
        "keras_learning_phase": "Keras learning phase",
    }
    served = tf.saved_model.load(str(artifact.savedmodel_dir)).signatures["serving_default"]
    got = served(x=tf.constant([[1.0, 2.0, 3.0]]))["y"].numpy()
    np.testing.assert_allclose(got, [[6.0, 9.0, 12.0]])
    assert not {"Select", "SelectV2"} & set(artifact.report["ops"]["after"]["byType"])


@pytest.mark.parametrize("jit", [True, False])
def test_xla_on_and_off(seg: dict[str, Any], tmp_path: Path, jit: bool) -> None:
    from edgeopt.converter.xla import marked_for_xla

    model = make_model("seg", _source(seg, constants={"keep_prob": 1.0}), tmp_path / "repo", xla={"jit": jit})
    artifact = convert_model(model, tmp_path / "work")
    assert marked_for_xla(artifact.savedmodel_dir) is jit
    assert artifact.report["validation"]["maxAbsError"] < 1e-4
    xla = artifact.report["latencyMs"].get("xla")
    if jit:
        assert xla["compiled"] is True and xla["latencyMsWithXla"] > 0 and xla["latencyMsWithoutXla"] > 0
        print(f"\n[xla] ratio with/without at batch 8: {xla['ratio']}")
    else:
        assert xla is None


def test_xla_that_cannot_compile_fails_with_its_reason(tmp_path: Path) -> None:
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
        tf.strings.length(tf.strings.as_string(x), name="y")  # strings: XLA has no kernels for them
    tf.io.write_graph(g.as_graph_def(), str(tmp_path), "s.pb", as_text=False)
    source = {
        "uri": f"file://{tmp_path}",
        "format": "FrozenGraph",
        "graph": "s.pb",
        "inputs": [{"name": "x", "shape": [-1, 2]}],
        "outputs": ["y"],
    }
    with pytest.raises(ConversionError, match="XLA could not compile"):
        convert_model(make_model("s", source, tmp_path / "repo", xla={"jit": True}), tmp_path / "work")
    assert not any(p.name.startswith(".convert-") for p in (tmp_path / "work").iterdir())
