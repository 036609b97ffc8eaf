"""Every transform of the seed guide's transform_graph list, each on a real TF graph built for it.

Each test checks three things: the transform changed what it should (op
types gone or fused), the answer is the original's within tolerance, and
the count it reports is the number of nodes it changed.  ``-s`` prints the
op counts before and after.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.tf import seed_graphs as G

pytestmark = pytest.mark.tf


def _apply(built: G.Built, transforms: list[str]) -> tuple[Any, list[dict[str, Any]]]:
    from edgeopt.converter.graph_model import Endpoint, FrozenModel
    from edgeopt.converter.optimize import optimize

    graph_def, inp, shape, out = built
    model = FrozenModel(
        graph_def, [Endpoint(inp, f"{inp}:0", "FP32", shape)], [Endpoint(out, f"{out}:0", "FP32", None)]
    )
    result, steps = optimize(model, transforms)
    return result.graph_def, steps


def _feed(shape: list[int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal([3 if d < 0 else d for d in shape]).astype(np.float32)


def _check(
    builder: Callable[[], G.Built], transforms: list[str], gone: set[str], *, rtol: float = 1e-5, atol: float = 1e-5
) -> tuple[Counter[str], Counter[str], list[dict[str, Any]]]:
    built = builder()
    graph_def, inp, shape, out = built
    before = Counter(n.op for n in graph_def.node)
    assert gone <= set(before), f"the test graph lacks {gone - set(before)}"
    optimized, steps = _apply(built, transforms)
    after = Counter(n.op for n in optimized.node)
    assert not gone & set(after), f"{gone & set(after)} survived: {dict(after)}"
    x = _feed(shape)
    np.testing.assert_allclose(G.run(optimized, inp, out, x), G.run(graph_def, inp, out, x), rtol=rtol, atol=atol)
    print(f"\n[ops] {builder.__name__} {transforms}: {sum(before.values())} -> {sum(after.values())} {dict(after)}")
    return before, after, steps


def test_fold_batch_norms_after_dense_through_a_reshape() -> None:
    _, after, steps = _check(G.bn_after_dense, ["fold_batch_norms"], {"FusedBatchNormV3"})
    assert steps[0]["changed"] == 1 and steps[0]["fused"] == 1
    assert after["BiasAdd"] == 1 and after["MatMul"] == 1


def test_fold_batch_norms_after_depthwise_v3() -> None:
    _, after, steps = _check(G.depthwise_bn_v3, ["fold_batch_norms"], {"FusedBatchNormV3"})
    assert steps[0]["changed"] == 1 and after["DepthwiseConv2dNative"] == 1


def test_fold_batch_norms_decomposed_rsqrt_mul_sub_add() -> None:
    _, after, steps = _check(G.decomposed_bn, ["fold_batch_norms"], {"Rsqrt", "Mul", "Sub"})
    assert steps[0]["decomposed"] == 1 and after["BiasAdd"] == 1 and after["Conv2D"] == 1


@pytest.mark.parametrize("tapped", ["identity", "bias"])
def test_fold_batch_norms_leaves_a_chain_with_a_second_consumer_alone(tapped: str) -> None:
    """Conv → [BiasAdd] → Identity → Mul, where the Identity or the BiasAdd also feeds a Relu.

    Folding the Mul into the conv's weights would change what the Relu sees:
    every hop from the producer to the folded op must feed only the next one.
    """
    import tensorflow as tf

    from edgeopt.converter.transforms import fold_batch_norms

    rng = np.random.default_rng(7)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4, 4, 3], name="x")
        h = tf.nn.conv2d(x, tf.constant(rng.normal(0, 0.3, (1, 1, 3, 2)).astype(np.float32)), 1, "SAME", name="conv")
        h = tf.nn.bias_add(h, tf.constant(rng.normal(0, 0.3, (2,)).astype(np.float32)), name="bias")
        tap = tf.identity(h, name="tap")
        tf.multiply(tap, tf.constant(rng.uniform(0.5, 1.5, (2,)).astype(np.float32)), name="y")
        tf.nn.relu(tap if tapped == "identity" else h, name="side")
    graph_def = g.as_graph_def()
    folded, changed, _ = fold_batch_norms(graph_def, {"x", "y", "side"})
    feed = _feed([2, 4, 4, 3])
    for out in ("y", "side"):
        np.testing.assert_allclose(G.run(folded, "x", out, feed), G.run(graph_def, "x", out, feed), rtol=1e-6)
    assert changed == 0


def test_fold_old_batch_norms_in_a_producer_8_graph() -> None:
    _, after, steps = _check(G.old_bn, ["fold_old_batch_norms"], {"BatchNormWithGlobalNormalization"})
    assert steps[0]["changed"] == 1 and after["BiasAdd"] == 1


@pytest.mark.parametrize("pad", [True, False])
def test_fuse_resize_and_conv(pad: bool) -> None:
    gone = {"ResizeBilinear", "Conv2D"} | ({"MirrorPad"} if pad else set())
    _, after, steps = _check(lambda: G.resize_pad_conv(pad), ["fuse_resize_and_conv"], gone, rtol=1e-4, atol=1e-4)
    assert after["FusedResizeAndPadConv2D"] == 1 and steps[0]["changed"] == 1


def test_fuse_resize_and_conv_leaves_a_variable_batch_alone() -> None:
    """TF 2.17's fused kernel is wrong past the first image of a batch: such graphs are not fused."""
    built = G.resize_pad_conv(True, batch=None)
    optimized, steps = _apply(built, ["fuse_resize_and_conv"])
    assert steps[0]["changed"] == 0 and steps[0]["skipped"] == 1 and "batch" in steps[0]["reason"]
    assert "FusedResizeAndPadConv2D" not in {n.op for n in optimized.node}


def test_remove_nodes_takes_identity_and_check_numerics() -> None:
    from edgeopt_dev.samples import _convbn_graph

    def convbn() -> G.Built:
        import tensorflow as tf

        return _convbn_graph(tf, np, as_variables=False).as_graph_def(), "input", [-1, 16, 16, 3], "output"

    _, _, steps = _check(convbn, ["remove_nodes"], {"Identity", "CheckNumerics"})
    assert steps[0]["changed"] == 3  # conv1/Identity, bn1/CheckNumerics, dense/Identity


def test_add_default_attributes_restores_what_the_writer_left_out() -> None:
    built = G.missing_default_attrs()
    graph_def = built[0]
    assert "data_format" not in next(n for n in graph_def.node if n.op == "DepthwiseConv2dNative").attr
    optimized, steps = _apply(built, ["add_default_attributes"])
    dw = next(n for n in optimized.node if n.op == "DepthwiseConv2dNative")
    assert dw.attr["data_format"].s == b"NHWC" and list(dw.attr["dilations"].list.i) == [1, 1, 1, 1]
    assert steps[0]["changed"] >= 2
    x = _feed(built[2])
    np.testing.assert_allclose(G.run(optimized, "x", "y", x), G.run(graph_def, "x", "y", x), rtol=1e-6)


def test_quantize_weights_stores_8_bits_and_reports_the_error() -> None:
    from edgeopt.converter.transforms.quantize import MIN_ELEMENTS

    built = G.big_dense()
    graph_def = built[0]
    big = [
        n
        for n in graph_def.node
        if n.op == "Const" and np.prod([d.size for d in n.attr["value"].tensor.tensor_shape.dim]) >= MIN_ELEMENTS
    ]
    optimized, steps = _apply(built, ["quantize_weights"])
    after = Counter(n.op for n in optimized.node)
    assert steps[0]["changed"] == len(big) == 2 and after["Dequantize"] == 2
    size_ratio = optimized.ByteSize() / graph_def.ByteSize()
    assert size_ratio < 0.3, size_ratio
    # The reported weight error is half a quantization step at most, and the real one.
    half_steps = []
    for n in big:
        w = np.frombuffer(n.attr["value"].tensor.tensor_content, np.float32)
        half_steps.append((w.max() - w.min()) / 255 / 2)
    assert steps[0]["maxWeightError"] <= max(half_steps) + 1e-7
    assert steps[0]["maxWeightError"] > 0
    x = _feed(built[2])
    got, want = G.run(optimized, "x", "y", x), G.run(graph_def, "x", "y", x)
    np.testing.assert_allclose(got, want, rtol=0.05, atol=0.05 * float(np.abs(want).max()))
    print(
        f"\n[quantize_weights] GraphDef {graph_def.ByteSize()} -> {optimized.ByteSize()} bytes "
        f"({size_ratio:.3f}x), max weight error {steps[0]['maxWeightError']:.2e}, "
        f"max output error {float(np.abs(got - want).max()):.2e}"
    )


def test_quantized_weights_do_not_keep_a_frozen_noop_alive() -> None:
    """A NoOp waiting on Dequantize(Const) guards nothing: strip_unused drops it, so the file really shrinks."""
    built = G.big_dense_frozen_style()
    optimized, _ = _apply(built, ["quantize_weights", "strip_unused_nodes"])
    assert "NoOp" not in {n.op for n in optimized.node}
    assert optimized.ByteSize() / built[0].ByteSize() < 0.3


def test_fold_constants_after_quantize_weights_keeps_them_quantized() -> None:
    optimized, _ = _apply(G.big_dense(), ["quantize_weights", "fold_constants"])
    assert Counter(n.op for n in optimized.node)["Dequantize"] == 2


def test_quantize_nodes_is_refused_with_a_pointer_to_int8() -> None:
    from edgeopt.errors import SpecError

    with pytest.raises(SpecError, match="INT8"):
        _apply(G.big_dense(), ["quantize_nodes"])


def test_the_guides_whole_list_in_order() -> None:
    """The guide's list minus quantize_nodes, on the segmentation-like conv graph."""
    names = [
        "add_default_attributes",
        "remove_nodes",
        "fold_constants",
        "fold_batch_norms",
        "fold_old_batch_norms",
        "fuse_resize_and_conv",
        "quantize_weights",
        "strip_unused_nodes",
        "sort_by_execution_order",
    ]
    _, _, steps = _check(G.decomposed_bn, names, {"Rsqrt", "Sub"})
    assert [s["transform"] for s in steps] == names
    for s in steps:
        print(f"[step] {s['transform']}: changed {s['changed']}, ops {s['opsBefore']} -> {s['opsAfter']}")


def _fill_graph(side: int) -> G.Built:
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
        big = tf.fill([side, side], 1.0, name="big")
        noise = tf.random.uniform([2], name="noise")
        tf.add(x * tf.reduce_sum(big, name="total"), noise * 0.0, name="y")
    return g.as_graph_def(), "x", [-1, 2], "y"


def test_fold_constants_sizes_values_before_evaluating_and_never_runs_stateful_ops() -> None:
    """A 1.6 GB Fill is left to run time (not materialized here); a random op is never evaluated."""
    optimized, steps = _apply(_fill_graph(20000), ["fold_constants"])
    ops = Counter(n.op for n in optimized.node)
    assert ops["Fill"] == 1 and ops["Sum"] == 1, dict(ops)
    assert ops["RandomUniform"] == 1
    small, _ = _apply(_fill_graph(4), ["fold_constants"])
    small_ops = Counter(n.op for n in small.node)
    assert "Fill" not in small_ops and "Sum" not in small_ops and small_ops["RandomUniform"] == 1
