"""``fuse_resize_and_conv``: ResizeBilinear [+ MirrorPad] + Conv2D into one FusedResizeAndPadConv2D.

As TensorFlow's own optimize_for_inference does: the fused kernel resizes
and pads patch by patch instead of materializing the upsampled image.  A
MirrorPad + Conv2D alone becomes FusedPadConv2D.  Only what the fused ops
can express is fused: NHWC, no dilation, float32, and the legacy
resize coordinates (``half_pixel_centers: false``) the fused kernel uses.
The Conv2D node keeps its name, so consumers and outputs are untouched.

Only batch 1 is fused: measured on TensorFlow 2.17 (CPU), both
FusedResizeAndPadConv2D and FusedPadConv2D give the right answer for the
first image of a batch and wrong numbers for every later one (off by ~20 on
unit-scale data).  So a graph whose batch is not statically 1 is left as it
is, and the step reports how many patterns it skipped and why.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from edgeopt.converter.transforms.graph import StepResult, const_node, consumers, drop_orphans, node_of, rebuild


def _conv_fusable(conv: Any) -> bool:
    a = conv.attr
    if "data_format" in a and a["data_format"].s not in (b"", b"NHWC"):
        return False
    if "dilations" in a and any(d != 1 for d in a["dilations"].list.i):
        return False
    return a["T"].type == tf.float32.as_datatype_enum and a["padding"].s in (b"SAME", b"VALID")


def _private(name: str, users: dict[str, list[Any]], protected: set[str]) -> bool:
    return len(users.get(name, [])) == 1 and name not in protected


def _fused_node(conv: Any, resize: Any | None, pad: Any | None, source: str, paddings: str) -> Any:
    fused = tf.compat.v1.NodeDef(name=conv.name, op="FusedResizeAndPadConv2D" if resize else "FusedPadConv2D")
    fused.input.extend([source] + ([resize.input[1]] if resize else []) + [paddings, conv.input[1]])
    fused.attr["T"].CopyFrom(conv.attr["T"])
    fused.attr["strides"].CopyFrom(conv.attr["strides"])
    fused.attr["padding"].CopyFrom(conv.attr["padding"])
    fused.attr["mode"].s = pad.attr["mode"].s if pad is not None else b"REFLECT"
    if resize is not None:
        fused.attr["resize_align_corners"].b = "align_corners" in resize.attr and resize.attr["align_corners"].b
    return fused


BATCH_REASON = "TensorFlow 2.17's fused resize/pad conv kernels are wrong for batch > 1; fused only at batch 1"


def _static_batch(graph_def: Any) -> dict[str, int | None]:
    """Each node's static leading dimension of output 0 (None when unknown)."""
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    batch: dict[str, int | None] = {}
    for op in graph.get_operations():
        shape = op.outputs[0].shape if op.outputs else None
        batch[op.name] = shape[0] if shape is not None and shape.rank else None
    return batch


def fuse_resize_and_conv(graph_def: Any, protected: set[str]) -> StepResult:
    by_name = {n.name: n for n in graph_def.node}
    batch = _static_batch(graph_def)
    skipped = 0
    users = consumers(graph_def)
    replaced: dict[str, Any] = {}
    extra: list[Any] = []
    absorbed: set[str] = set()
    for conv in graph_def.node:
        if conv.op != "Conv2D" or not _conv_fusable(conv):
            continue
        hop = by_name.get(node_of(conv.input[0]))
        pad = hop if hop is not None and hop.op == "MirrorPad" and _private(hop.name, users, protected) else None
        if pad is not None:
            hop = by_name.get(node_of(pad.input[0]))
        resize = (
            hop if hop is not None and hop.op == "ResizeBilinear" and _private(hop.name, users, protected) else None
        )
        if resize is not None and "half_pixel_centers" in resize.attr and resize.attr["half_pixel_centers"].b:
            resize = None
        if pad is None and resize is None:
            continue
        source = pad.input[0] if resize is None else resize.input[0]  # type: ignore[union-attr]
        if batch.get(node_of(source)) != 1:
            skipped += 1
            continue
        if pad is not None:
            paddings = pad.input[1]
        else:
            zeros = const_node(f"{conv.name}/no_padding", np.zeros((4, 2), np.int32), tf.int32.as_datatype_enum)
            extra.append(zeros)
            paddings = zeros.name
        replaced[conv.name] = _fused_node(conv, resize, pad, source, paddings)
        absorbed.update(n.name for n in (pad, resize) if n is not None)
    details = {"skipped": skipped, "reason": BATCH_REASON} if skipped else {}
    if not replaced:
        return StepResult(graph_def, 0, details)
    fused = rebuild(graph_def, [replaced.get(n.name, n) for n in graph_def.node] + extra)
    return StepResult(drop_orphans(fused, absorbed, protected), len(replaced), details)
