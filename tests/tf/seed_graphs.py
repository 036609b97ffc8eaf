"""Small real TF graphs, one per transform of the seed guide's transform_graph list.

Each builder returns (GraphDef, input name, input shape, output name); the
weights are seeded random numbers, so a fold that is off by a channel shows
up as a mismatch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Built = tuple[Any, str, list[int], str]


def _tf() -> Any:
    import tensorflow as tf

    return tf


def _c(tf: Any, rng: Any, shape: tuple[int, ...], name: str, lo: float | None = None) -> Any:
    value = rng.uniform(lo, 1.5, shape) if lo is not None else rng.normal(0, 0.3, shape)
    return tf.constant(value.astype(np.float32), name=name)


def bn_after_dense() -> Built:
    """Keras-TF1 style Dense + fused batch norm: MatMul → Reshape [N,1,1,C] → FusedBatchNormV3 → Reshape."""
    tf, rng = _tf(), np.random.default_rng(1)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 6], name="x")
        h = tf.matmul(x, _c(tf, rng, (6, 4), "dense/kernel"), name="dense/MatMul")
        h = tf.reshape(h, [-1, 1, 1, 4], name="bn/Reshape")
        h = tf.compat.v1.nn.fused_batch_norm(
            h,
            _c(tf, rng, (4,), "bn/gamma", 0.5),
            _c(tf, rng, (4,), "bn/beta"),
            mean=_c(tf, rng, (4,), "bn/mean"),
            variance=_c(tf, rng, (4,), "bn/var", 0.5),
            epsilon=1e-3,
            is_training=False,
            name="bn/FusedBatchNormV3",
        )[0]
        tf.reshape(h, [-1, 4], name="y")
    return g.as_graph_def(), "x", [-1, 6], "y"


def depthwise_bn_v3() -> Built:
    tf, rng = _tf(), np.random.default_rng(2)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 3], name="x")
        h = tf.nn.depthwise_conv2d(x, _c(tf, rng, (3, 3, 3, 2), "dw/kernel"), [1, 1, 1, 1], "SAME", name="dw")
        h = tf.raw_ops.FusedBatchNormV3(
            x=h,
            scale=_c(tf, rng, (6,), "bn/gamma", 0.5),
            offset=_c(tf, rng, (6,), "bn/beta"),
            mean=_c(tf, rng, (6,), "bn/mean"),
            variance=_c(tf, rng, (6,), "bn/var", 0.5),
            epsilon=1e-3,
            is_training=False,
            name="bn",
        )[0]
        tf.nn.relu(h, name="y")
    return g.as_graph_def(), "x", [-1, 8, 8, 3], "y"


def decomposed_bn() -> Built:
    """``tf.nn.batch_normalization`` after a Conv2D: Rsqrt/Mul/Sub/AddV2, no fused op."""
    tf, rng = _tf(), np.random.default_rng(3)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 3], name="x")
        h = tf.nn.conv2d(x, _c(tf, rng, (3, 3, 3, 5), "conv/kernel"), 1, "SAME", name="conv")
        h = tf.nn.batch_normalization(
            h,
            _c(tf, rng, (5,), "bn/mean"),
            _c(tf, rng, (5,), "bn/var", 0.5),
            _c(tf, rng, (5,), "bn/beta"),
            _c(tf, rng, (5,), "bn/gamma", 0.5),
            1e-3,
            name="bn",
        )
        tf.identity(h, name="y")
    return g.as_graph_def(), "x", [-1, 8, 8, 3], "y"


def resize_pad_conv(pad: bool = True, batch: int | None = 1) -> Built:
    tf, rng = _tf(), np.random.default_rng(4)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [batch, 6, 6, 3], name="x")
        h = tf.compat.v1.image.resize_bilinear(x, [12, 12], name="resize")
        if pad:
            h = tf.pad(h, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT", name="pad")
        h = tf.nn.conv2d(h, _c(tf, rng, (3, 3, 3, 4), "conv/kernel"), 1, "VALID", name="conv")
        tf.nn.relu(h, name="y")
    return g.as_graph_def(), "x", [-1 if batch is None else batch, 6, 6, 3], "y"


def old_bn() -> Built:
    """BatchNormWithGlobalNormalization after a Conv2D in a GraphDef of producer version 8 (as old graphs are)."""
    tf, rng = _tf(), np.random.default_rng(5)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 3], name="x")
        conv = tf.nn.conv2d(x, _c(tf, rng, (3, 3, 3, 4), "conv/kernel"), 1, "SAME", name="conv")
        for name, lo in (("mean", None), ("var", 0.5), ("beta", None), ("gamma", 0.5)):
            _c(tf, rng, (4,), f"bn/{name}", lo)
        tf.nn.relu(conv, name="y")
    gd = g.as_graph_def()
    bn = tf.compat.v1.NodeDef(name="bn", op="BatchNormWithGlobalNormalization")
    bn.input.extend(["conv", "bn/mean", "bn/var", "bn/beta", "bn/gamma"])
    bn.attr["T"].type = tf.float32.as_datatype_enum
    bn.attr["variance_epsilon"].f = 1e-3
    bn.attr["scale_after_normalization"].b = True
    gd.node.append(bn)
    relu = next(n for n in gd.node if n.name == "y")
    relu.input[0] = "bn"
    gd.versions.producer = 8
    gd.versions.min_consumer = 0
    return gd, "x", [-1, 8, 8, 3], "y"


def big_dense(units: int = 256) -> Built:
    """Two Dense layers with 64x256 and 256x10 float32 weights: quantize_weights' food."""
    tf, rng = _tf(), np.random.default_rng(6)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 64], name="x")
        h = tf.nn.relu(tf.matmul(x, _c(tf, rng, (64, units), "d1/kernel")), name="d1")
        tf.matmul(h, _c(tf, rng, (units, 10), "d2/kernel"), name="y")
    return g.as_graph_def(), "x", [-1, 64], "y"


def big_dense_frozen_style() -> Built:
    """big_dense as freezing leaves it: a NoOp waits on every weight and the output waits on the NoOp."""
    tf = _tf()
    gd, inp, shape, out = big_dense()
    noop = tf.compat.v1.NodeDef(name="StatefulPartitionedCall/NoOp", op="NoOp")
    noop.input.extend(["^d1/kernel", "^d2/kernel"])
    ident = tf.compat.v1.NodeDef(name="out", op="Identity")
    ident.input.extend([out, "^" + noop.name])
    ident.attr["T"].type = tf.float32.as_datatype_enum
    gd.node.extend([noop, ident])
    return gd, inp, shape, "out"


def missing_default_attrs() -> Built:
    """A graph whose nodes lost their defaulted attrs, as older writers produced them."""
    gd, inp, shape, out = depthwise_bn_v3()
    for n in gd.node:
        for key in ("data_format", "dilations", "explicit_paddings", "exponential_avg_factor"):
            if key in n.attr:
                del n.attr[key]
    return gd, inp, shape, out


def run(graph_def: Any, inp: str, out: str, x: np.ndarray) -> np.ndarray:
    tf = _tf()
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=g) as sess:
        return np.asarray(sess.run(f"{out}:0", {f"{inp}:0": x}))
