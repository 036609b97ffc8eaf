"""Small, real TensorFlow models for examples, tests, the demo and the benchmarks.

Every model here is built with TensorFlow on the spot (no downloads, no
weights from the network) so that a fresh clone can exercise the whole path.
Each writer returns a dict describing what it wrote (paths, input and output
names) so callers can build an OptimizedModel spec without guessing.

TensorFlow is imported inside the functions: ``edgeopt-dev samples --help`` and
the operator image must not pay for (or need) it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: File names of the classic checkpoint flow (``tf.io.write_graph`` + ``Saver.save``).
ADD_GRAPH = "my_graph.pb"
ADD_GRAPH_TEXT = "my_graph.pbtxt"
ADD_CHECKPOINT = "test_model"

CONVBN_GRAPH = "convbn_frozen.pb"
CONVBN_CHECKPOINT_GRAPH = "convbn_graph.pb"
CONVBN_CHECKPOINT = "convbn_model"


def _quiet_tf() -> Any:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def write_add_checkpoint(directory: str | Path, *, resource_variable: bool = True) -> dict[str, Any]:
    """The classic TF1 flow: ``y = a + x`` with a resource variable ``a = 5.0``.

    ``x`` is a float32 placeholder of shape ``[-1, 1]`` (a batch of scalars) so
    that the converted model can be served with Triton batching; ``y`` has the
    same shape and gives 6.0 for x = 1.0.  Writes the GraphDef both binary
    (``my_graph.pb``) and as text (``my_graph.pbtxt``), and the checkpoint
    ``test_model`` (+ ``test_model.meta``).  The variable is a *resource*
    variable on purpose: that is what TF 2.x's ``freeze_graph`` tool breaks on;
    ``resource_variable=False`` writes the TF1 ref-variable kind instead.
    """
    tf = _quiet_tf()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        a = tf.compat.v1.get_variable("a", initializer=tf.constant(5.0), use_resource=resource_variable)
        x = tf.compat.v1.placeholder(tf.float32, shape=[None, 1], name="x")
        tf.add(a, x, name="y")
        saver = tf.compat.v1.train.Saver()
        init = tf.compat.v1.global_variables_initializer()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(init)
            tf.io.write_graph(sess.graph_def, str(out), ADD_GRAPH, as_text=False)
            tf.io.write_graph(sess.graph_def, str(out), ADD_GRAPH_TEXT, as_text=True)
            saver.save(sess, str(out / ADD_CHECKPOINT))
    return {
        "dir": str(out),
        "format": "Checkpoint",
        "graph": ADD_GRAPH,
        "graph_text": ADD_GRAPH_TEXT,
        "meta": ADD_CHECKPOINT + ".meta",
        "checkpoint": ADD_CHECKPOINT,
        "inputs": [{"name": "x", "dtype": "FP32", "shape": [-1, 1]}],
        "outputs": ["y"],
    }


def write_guide_checkpoint(directory: str | Path) -> dict[str, Any]:
    """The seed guide's step 1, verbatim in TF1 terms: a *scalar* ``x``, ``a = tf.Variable(5.0)``, ``y = a + x``.

    Unlike :func:`write_add_checkpoint` nothing is batched: ``x`` has shape
    ``()`` and so has ``y`` (6.0 for x = 1.0).  Writes ``my_graph.pb`` and the
    checkpoint ``test_model`` exactly as the guide's snippet does.
    """
    tf = _quiet_tf()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(dtype=tf.float32, shape=(), name="x")
        a = tf.Variable(5.0, name="a")
        y = tf.add(a, x, name="y")
        saver = tf.compat.v1.train.Saver()
    with tf.compat.v1.Session(graph=graph) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        assert sess.run(y, {x: 1.0}) == 6.0
        tf.io.write_graph(sess.graph_def, str(out), ADD_GRAPH, as_text=False)
        saver.save(sess=sess, save_path=str(out / ADD_CHECKPOINT))
    return {
        "dir": str(out),
        "format": "Checkpoint",
        "graph": ADD_GRAPH,
        "checkpoint": ADD_CHECKPOINT,
        "inputs": [{"name": "x", "dtype": "FP32", "shape": []}],
        "outputs": ["y"],
    }


SEGMENTATION_GRAPH = "segmentation.pb"
SEGMENTATION_CHECKPOINT = "segmentation_model"


def write_segmentation_checkpoint(directory: str | Path, *, classes: int = 2, size: int = 8) -> dict[str, Any]:
    """A graph shaped like the guide's semantic-segmentation model: ``image_input``, ``keep_prob``, ``Reshape_3``.

    conv → relu → dropout(keep_prob) → 1x1 conv to ``classes`` → ``Reshape_3``
    (logits per pixel, [-1, classes]), plus a training-only branch:
    a ``correct_label`` placeholder and ``cross_entropy_loss``.  Inference
    feeds ``keep_prob: 1.0``; ``Reshape_3`` never needs the labels.
    """
    tf = _quiet_tf()
    import numpy as np

    rng = np.random.default_rng(9)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [None, size, size, 3], name="image_input")
        keep_prob = tf.compat.v1.placeholder(tf.float32, name="keep_prob")
        labels = tf.compat.v1.placeholder(tf.float32, [None, size, size, classes], name="correct_label")
        w1 = tf.Variable(rng.normal(0, 0.3, (3, 3, 3, 8)).astype("float32"), name="conv1/kernel")
        w2 = tf.Variable(rng.normal(0, 0.3, (1, 1, 8, classes)).astype("float32"), name="logits/kernel")
        h = tf.nn.relu(tf.nn.conv2d(image, w1, 1, "SAME"), name="relu1")
        h = tf.compat.v1.nn.dropout(h, keep_prob=keep_prob, name="dropout")
        logits = tf.reshape(tf.nn.conv2d(h, w2, 1, "SAME"), (-1, classes), name="Reshape_3")
        flat_labels = tf.reshape(labels, (-1, classes))
        tf.reduce_mean(
            tf.nn.softmax_cross_entropy_with_logits(labels=flat_labels, logits=logits), name="cross_entropy_loss"
        )
        saver = tf.compat.v1.train.Saver()
    with tf.compat.v1.Session(graph=graph) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        tf.io.write_graph(sess.graph_def, str(out), SEGMENTATION_GRAPH, as_text=False)
        saver.save(sess, str(out / SEGMENTATION_CHECKPOINT))
    return {
        "dir": str(out),
        "format": "Checkpoint",
        "graph": SEGMENTATION_GRAPH,
        "checkpoint": SEGMENTATION_CHECKPOINT,
        "inputs": [{"name": "image_input", "dtype": "FP32", "shape": [-1, size, size, 3]}],
        "outputs": ["Reshape_3"],
        "constants": {"keep_prob": 1.0},
    }


def _convbn_graph(tf: Any, np: Any, *, as_variables: bool) -> Any:
    """Build conv + batch norm + relu blocks with the usual training-time noise.

    Two blocks: Conv2D → Identity → FusedBatchNormV3 → CheckNumerics → Relu,
    then DepthwiseConv2dNative → FusedBatchNorm (v1) → Relu6, a mean-pool and
    MatMul → Identity → BiasAdd → Softmax head, and an unused branch (a
    summary-style reduction) hanging off the input.  Weights are seeded random numbers.
    """
    rng = np.random.default_rng(7)

    def weight(name: str, value: Any) -> Any:
        value = value.astype("float32")
        if as_variables:
            return tf.compat.v1.get_variable(name, initializer=tf.constant(value), use_resource=True)
        return tf.constant(value, name=name)

    def bn_params(prefix: str, channels: int) -> list[Any]:
        return [
            weight(f"{prefix}/gamma", rng.uniform(0.5, 1.5, channels)),
            weight(f"{prefix}/beta", rng.normal(0, 0.1, channels)),
            weight(f"{prefix}/moving_mean", rng.normal(0, 0.1, channels)),
            weight(f"{prefix}/moving_variance", rng.uniform(0.5, 1.5, channels)),
        ]

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape=[None, 16, 16, 3], name="input")
        w1 = weight("conv1/kernel", rng.normal(0, 0.3, (3, 3, 3, 8)))
        h = tf.nn.conv2d(x, w1, strides=1, padding="SAME", name="conv1/Conv2D")
        h = tf.identity(h, name="conv1/Identity")
        g, b, m, v = bn_params("bn1", 8)
        h = tf.compat.v1.nn.fused_batch_norm(
            h, g, b, mean=m, variance=v, epsilon=1e-3, is_training=False, name="bn1/FusedBatchNormV3"
        )[0]
        h = tf.debugging.check_numerics(h, "bn1 output", name="bn1/CheckNumerics")
        h = tf.nn.relu(h, name="relu1")
        w2 = weight("conv2/depthwise_kernel", rng.normal(0, 0.3, (3, 3, 8, 1)))
        h = tf.nn.depthwise_conv2d(h, w2, strides=[1, 2, 2, 1], padding="SAME", name="conv2/depthwise")
        g, b, m, v = bn_params("bn2", 8)
        h = tf.raw_ops.FusedBatchNorm(
            x=h, scale=g, offset=b, mean=m, variance=v, epsilon=1e-3, is_training=False, name="bn2/FusedBatchNorm"
        )[0]
        h = tf.nn.relu6(h, name="relu2")
        h = tf.reduce_mean(h, axis=[1, 2], name="pool")
        w3 = weight("dense/kernel", rng.normal(0, 0.3, (8, 4)))
        h = tf.matmul(h, w3, name="dense/MatMul")
        h = tf.identity(h, name="dense/Identity")
        h = tf.nn.bias_add(h, weight("dense/bias", rng.normal(0, 0.1, 4)), name="dense/BiasAdd")
        tf.nn.softmax(h, name="output")
        # Nothing the output needs: strip_unused_nodes should drop it.
        tf.multiply(tf.reduce_mean(x), 2.0, name="unused_branch")
    return graph


def write_conv_bn_graph(directory: str | Path, *, checkpoint: bool = True) -> dict[str, Any]:
    """A conv + fused batch norm network, frozen (``convbn_frozen.pb``) and as a checkpoint.

    Input ``input`` float32 ``[-1, 16, 16, 3]``, output ``output`` ``[-1, 4]``
    (softmax).  The frozen graph has the weights as constants; the checkpoint
    variant (``convbn_graph.pb`` + ``convbn_model``) holds them in resource
    variables, so both the FrozenGraph and the Checkpoint paths meet batch norms.
    """
    tf = _quiet_tf()
    import numpy as np

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    frozen = _convbn_graph(tf, np, as_variables=False)
    tf.io.write_graph(frozen.as_graph_def(), str(out), CONVBN_GRAPH, as_text=False)
    info: dict[str, Any] = {
        "dir": str(out),
        "format": "FrozenGraph",
        "graph": CONVBN_GRAPH,
        "inputs": [{"name": "input", "dtype": "FP32", "shape": [-1, 16, 16, 3]}],
        "outputs": ["output"],
    }
    if checkpoint:
        graph = _convbn_graph(tf, np, as_variables=True)
        with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.io.write_graph(sess.graph_def, str(out), CONVBN_CHECKPOINT_GRAPH, as_text=False)
            tf.compat.v1.train.Saver().save(sess, str(out / CONVBN_CHECKPOINT))
        info["checkpoint_graph"] = CONVBN_CHECKPOINT_GRAPH
        info["checkpoint"] = CONVBN_CHECKPOINT
    return info


def build_keras_model(architecture: str = "small", *, input_size: int = 32) -> Any:
    """A Keras model with random weights: ``small`` (Dense/Conv + BN + Dropout), or an application.

    ``mobilenetv2`` and ``resnet50`` use ``weights=None``: nothing is downloaded.
    """
    _quiet_tf()
    import keras

    keras.utils.set_random_seed(3)
    if architecture == "small":
        inp = keras.Input((input_size, input_size, 3), name="image")
        h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inp)
        h = keras.layers.BatchNormalization(name="bn")(h)
        h = keras.layers.ReLU(name="relu")(h)
        h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
        h = keras.layers.Dropout(0.5, name="dropout")(h)
        h = keras.layers.Dense(16, name="dense")(h)
        h = keras.layers.BatchNormalization(name="bn_dense")(h)
        out = keras.layers.Dense(3, activation="softmax", name="probs")(h)
        model = keras.Model(inp, out, name="small")
        # Give the batch norms non-trivial statistics, as a trained model would have.
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                gamma, beta, mean, var = layer.get_weights()
                rng = __import__("numpy").random.default_rng(5)
                layer.set_weights(
                    [
                        rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                        rng.normal(0, 0.1, beta.shape).astype("float32"),
                        rng.normal(0, 0.1, mean.shape).astype("float32"),
                        rng.uniform(0.5, 1.5, var.shape).astype("float32"),
                    ]
                )
        return model
    shape = (input_size, input_size, 3)
    if architecture == "mobilenetv2":
        return keras.applications.MobileNetV2(input_shape=shape, weights=None, classes=10)
    if architecture == "resnet50":
        return keras.applications.ResNet50(input_shape=shape, weights=None, classes=10)
    raise ValueError(f"unknown architecture {architecture!r}; use small, mobilenetv2 or resnet50")


def write_calibration(directory: str | Path, inputs: list[dict[str, Any]], samples: int = 64) -> Path:
    """``calibration.npz``: seeded uniform [0, 1) float32 arrays keyed by input name, for INT8 paths.

    Random data proves the calibration path; it does not give real ranges.
    """
    import numpy as np

    rng = np.random.default_rng(17)
    arrays = {t["name"]: rng.random([samples, *t["shape"][1:]]).astype("float32") for t in inputs}
    path = Path(directory) / "calibration.npz"
    np.savez(path, **arrays)
    return path


def write_keras_model(
    directory: str | Path,
    fmt: str = "savedmodel",
    *,
    architecture: str = "small",
    input_size: int = 32,
    calibration_samples: int = 0,
) -> dict[str, Any]:
    """Write a Keras model as a SavedModel (``model.export``), ``model.keras`` or ``model.h5``.

    The SavedModel's ``serving_default`` signature takes the input by its
    Keras name and returns ``output_0`` (Keras 3's export convention).  With
    ``calibration_samples`` > 0 a ``calibration.npz`` keyed by the input
    names is written next to it (for INT8 examples).
    """
    model = build_keras_model(architecture, input_size=input_size)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    inputs = [
        {"name": t.name, "dtype": "FP32", "shape": [-1 if d is None else int(d) for d in t.shape]} for t in model.inputs
    ]
    if calibration_samples > 0:
        write_calibration(out, inputs, calibration_samples)
    if fmt == "savedmodel":
        target = out / "saved_model"
        model.export(str(target), verbose=False)
        return {"dir": str(out), "format": "SavedModel", "path": "saved_model", "inputs": inputs}
    if fmt in ("keras", "h5"):
        target = out / f"model.{fmt}"
        model.save(str(target))
        return {"dir": str(out), "format": "Keras", "path": target.name, "inputs": inputs}
    raise ValueError(f"unknown Keras format {fmt!r}; use savedmodel, keras or h5")


# --------------------------------------------------------------------------- command


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Write a small real TensorFlow model (built here, no downloads)."
    parser.add_argument("kind", choices=["add", "guide", "segmentation", "convbn", "keras"], help="which model")
    parser.add_argument("--dir", required=True, help="directory to write into (created if missing)")
    parser.add_argument("--format", default="savedmodel", choices=["savedmodel", "keras", "h5"], help="keras only")
    parser.add_argument(
        "--architecture", default="small", choices=["small", "mobilenetv2", "resnet50"], help="keras only"
    )
    parser.add_argument("--input-size", type=int, default=32, help="keras only: image height and width")
    parser.add_argument(
        "--calibration", type=int, default=0, metavar="N", help="keras only: also write calibration.npz with N samples"
    )


def run(args: argparse.Namespace) -> int:
    if args.kind == "add":
        info = write_add_checkpoint(args.dir)
    elif args.kind == "guide":
        info = write_guide_checkpoint(args.dir)
    elif args.kind == "segmentation":
        info = write_segmentation_checkpoint(args.dir)
    elif args.kind == "convbn":
        info = write_conv_bn_graph(args.dir)
    else:
        info = write_keras_model(
            args.dir,
            args.format,
            architecture=args.architecture,
            input_size=args.input_size,
            calibration_samples=args.calibration,
        )
    json.dump(info, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
