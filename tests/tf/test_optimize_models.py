"""Conv + fused batch norm graphs and Keras models with BN + Dropout: smaller graphs, same answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeopt.converter.pipeline import convert_model
from tests.tf.conftest import convbn_source, make_model

pytestmark = pytest.mark.tf


def _run_saved_model(path: Path, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    import tensorflow as tf

    sig = tf.saved_model.load(str(path)).signatures["serving_default"]
    return {k: v.numpy() for k, v in sig(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def _run_graph(graph_def: object, fetch: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=g) as sess:
        return sess.run(fetch, feeds)


@pytest.mark.parametrize("variant", ["frozen", "checkpoint"])
def test_conv_bn_graph_folds_batch_norms_and_keeps_answers(convbn_dir: Path, tmp_path: Path, variant: str) -> None:
    from edgeopt.converter.load import parse_graph_def

    source = convbn_source(convbn_dir)
    if variant == "checkpoint":
        source.update(format="Checkpoint", graph="convbn_graph.pb", checkpoint="convbn_model")
    model = make_model("convbn", source, tmp_path / "repo", validation={"samples": 4, "rtol": 1e-4, "atol": 1e-5})
    artifact = convert_model(model, tmp_path / "work")
    ops = artifact.report["ops"]
    before, after = ops["before"]["byType"], ops["after"]["byType"]
    assert ops["after"]["total"] < ops["before"]["total"]
    assert before.get("FusedBatchNormV3") == 1 and before.get("FusedBatchNorm") == 1
    for gone in ("FusedBatchNorm", "FusedBatchNormV3", "Identity", "CheckNumerics"):
        assert gone not in after, f"{gone} survived: {after}"
    # The original frozen graph and the converted SavedModel agree on fresh inputs.
    x = np.random.default_rng(11).standard_normal((3, 16, 16, 3)).astype(np.float32)
    original = _run_graph(parse_graph_def(convbn_dir / "convbn_frozen.pb"), "output:0", {"input:0": x})
    converted = _run_saved_model(artifact.savedmodel_dir, input=x)["output"]
    np.testing.assert_allclose(converted, original, rtol=1e-5, atol=1e-6)
    assert artifact.report["validation"]["maxAbsError"] < 1e-5


def test_each_transform_on_the_raw_graph(convbn_dir: Path) -> None:
    """Run transforms one by one on the unfrozen-by-us .pb, noise and unused branch included."""
    from edgeopt.converter.graph_model import Endpoint, FrozenModel
    from edgeopt.converter.load import parse_graph_def
    from edgeopt.converter.optimize import optimize

    raw = parse_graph_def(convbn_dir / "convbn_frozen.pb")
    model = FrozenModel(
        raw,
        [Endpoint("input", "input:0", "FP32", [-1, 16, 16, 3])],
        [Endpoint("output", "output:0", "FP32", [-1, 4])],
    )
    x = np.random.default_rng(2).standard_normal((2, 16, 16, 3)).astype(np.float32)
    expected = _run_graph(raw, "output:0", {"input:0": x})
    assert "unused_branch" in {n.name for n in raw.node}
    for transform, gone in [
        ("strip_unused_nodes", "unused_branch"),
        ("remove_identity", "conv1/Identity"),
        ("remove_check_numerics", "bn1/CheckNumerics"),
    ]:
        result, steps = optimize(model, [transform])
        names = {n.name for n in result.graph_def.node}
        assert gone not in names and {"input", "output"} <= names
        assert steps[0]["changed"] >= 1
        np.testing.assert_allclose(_run_graph(result.graph_def, "output:0", {"input:0": x}), expected, rtol=1e-6)
    # Batch norm folding looks through the Identity between Conv2D and FusedBatchNormV3.
    result, steps = optimize(model, ["fold_batch_norms"])
    assert steps[0]["changed"] == 2
    ops = {n.op for n in result.graph_def.node}
    assert not ops & {"FusedBatchNorm", "FusedBatchNormV3"}
    np.testing.assert_allclose(_run_graph(result.graph_def, "output:0", {"input:0": x}), expected, rtol=1e-5, atol=1e-6)
    # Sorting puts every node after its inputs.
    result, _ = optimize(model, ["sort_by_execution_order"])
    seen: set[str] = set()
    for n in result.graph_def.node:
        assert all(i.lstrip("^").split(":")[0] in seen for i in n.input), n.name
        seen.add(n.name)


@pytest.mark.parametrize(
    ("fmt", "path"), [("SavedModel", "saved_model"), ("Keras", "model.keras"), ("Keras", "model.h5")]
)
def test_keras_model_with_bn_and_dropout(keras_dir: Path, tmp_path: Path, fmt: str, path: str) -> None:
    import keras

    uri = keras_dir / path
    model = make_model("keras-small", {"uri": f"file://{uri}", "format": fmt}, tmp_path / "repo")
    artifact = convert_model(model, tmp_path / "work")
    ops = artifact.report["ops"]
    assert ops["after"]["total"] <= ops["before"]["total"]
    after = ops["after"]["byType"]
    assert after.get("Identity", 0) <= 1  # the signature's own output node may stay
    # Keras 3 batch norms (Mul/AddV2 after folding rsqrt) are folded into the conv/dense weights.
    assert not {"Mul", "Rsqrt", "Sub", "NoOp"} & set(after), after
    (inp,) = artifact.inputs
    assert (inp.name, inp.dtype, inp.shape) == ("image", "FP32", [-1, 32, 32, 3])
    (out,) = artifact.outputs
    assert out.name == ("output_0" if fmt == "SavedModel" else "probs") and out.shape == [-1, 3]
    x = np.random.default_rng(5).standard_normal((4, 32, 32, 3)).astype(np.float32)
    expected = keras.models.load_model(keras_dir / "model.keras").predict(x, verbose=0)
    got = _run_saved_model(artifact.savedmodel_dir, image=x)[out.name]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("transpose_b", [False, True])
def test_scale_shift_after_matmul_folds_into_weights(transpose_b: bool) -> None:
    """(x @ W + b) * c + d  →  x @ (W * c) + (b * c + d), with W stored transposed or not."""
    import tensorflow as tf

    from edgeopt.converter.graph_model import Endpoint, FrozenModel
    from edgeopt.converter.optimize import optimize

    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 4)).astype(np.float32)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 5], name="x")
        weights = tf.constant(w.T if transpose_b else w, name="W")
        h = tf.matmul(x, weights, transpose_b=transpose_b, name="mm")
        h = tf.add(h, tf.constant(rng.standard_normal(4).astype(np.float32)), name="bias")
        h = tf.multiply(tf.constant(rng.uniform(0.5, 2, 4).astype(np.float32)), h, name="scale")
        tf.add(h, tf.constant(rng.standard_normal(4).astype(np.float32)), name="y")
    model = FrozenModel(
        g.as_graph_def(), [Endpoint("x", "x:0", "FP32", [-1, 5])], [Endpoint("y", "y:0", "FP32", [-1, 4])]
    )
    result, steps = optimize(model, ["fold_batch_norms"])
    assert steps[0]["changed"] == 1
    assert sorted(n.op for n in result.graph_def.node) == ["BiasAdd", "Const", "Const", "MatMul", "Placeholder"]
    feeds = {"x:0": rng.standard_normal((3, 5)).astype(np.float32)}
    np.testing.assert_allclose(
        _run_graph(result.graph_def, "y:0", feeds), _run_graph(model.graph_def, "y:0", feeds), rtol=1e-5, atol=1e-6
    )


def test_validation_uses_the_calibration_samples_when_given(keras_dir: Path, tmp_path: Path) -> None:
    from edgeopt_dev.samples import write_calibration

    cal = write_calibration(tmp_path, [{"name": "image", "shape": [-1, 32, 32, 3]}], samples=5)
    model = make_model(
        "keras-small",
        {"uri": f"file://{keras_dir / 'saved_model'}", "format": "SavedModel"},
        tmp_path / "repo",
        tensorrt={"enabled": False, "calibration": {"uri": f"file://{cal}"}},
        validation={"samples": 3},
    )
    artifact = convert_model(model, tmp_path / "work")
    assert artifact.report["validation"]["inputs"] == f"file:{cal}"
    assert artifact.report["latencyMs"]["batch"] == 3
    assert artifact.warmup_inputs["image"].shape == (1, 32, 32, 3)


def test_saved_model_with_two_inputs_and_two_outputs_keeps_keys(tmp_path: Path) -> None:
    """Keys survive freezing even where their sorted order differs from the graph's node order."""
    import tensorflow as tf

    class Model(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable([[2.0], [3.0]])

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None], tf.int64)])
        def serve(self, zeta: tf.Tensor, alpha: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"z_sum": tf.matmul(zeta, self.w), "a_count": alpha * 2}

    module = Model()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    model = make_model("two", {"uri": f"file://{tmp_path / 'sm'}", "format": "SavedModel"}, tmp_path / "repo")
    artifact = convert_model(model, tmp_path / "work")
    assert [(t.name, t.dtype, t.shape) for t in artifact.inputs] == [
        ("alpha", "INT64", [-1]),
        ("zeta", "FP32", [-1, 2]),
    ]
    assert [(t.name, t.dtype, t.shape) for t in artifact.outputs] == [
        ("a_count", "INT64", [-1]),
        ("z_sum", "FP32", [-1, 1]),
    ]
    out = _run_saved_model(
        artifact.savedmodel_dir, zeta=np.array([[1.0, 1.0]], np.float32), alpha=np.array([5], np.int64)
    )
    assert out["z_sum"].tolist() == [[5.0]] and out["a_count"].tolist() == [10]
