"""``quantize_weights``: large float32 Const weights stored as 8 bits plus their range.

Each Const with at least ``MIN_ELEMENTS`` float32 values becomes a quint8
Const, two float Consts (min, max) and a ``Dequantize`` of the original name,
so consumers are untouched and the model file is about 4x smaller.  The
arithmetic stays float32; the price is a rounding error of at most half a
quantization step, ``(max - min) / 255 / 2`` per weight, which is reported
(``maxWeightError``) and then checked end to end by validation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from edgeopt.converter.transforms.graph import StepResult, const_node, rebuild

#: TensorFlow's transform_graph default: smaller tensors are not worth it.
MIN_ELEMENTS = 1024
LEVELS = 255


def quantize_array(w: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(uint8 codes, min, max) for MIN_COMBINED dequantization: w ~= min + q * (max - min) / 255."""
    lo, hi = float(w.min()), float(w.max())
    if hi <= lo:
        hi = lo + 1.0
    q = np.clip(np.rint((w.astype(np.float64) - lo) * LEVELS / (hi - lo)), 0, LEVELS).astype(np.uint8)
    return q, lo, hi


def dequantize_array(q: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (lo + q.astype(np.float64) * (hi - lo) / LEVELS).astype(np.float32)


def _quantized_nodes(node: Any, w: np.ndarray) -> tuple[list[Any], float]:
    q, lo, hi = quantize_array(w)
    codes = tf.compat.v1.NodeDef(name=f"{node.name}/quantized", op="Const")
    codes.attr["dtype"].type = tf.quint8.as_datatype_enum
    codes.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(q, dtype=tf.quint8))
    f32 = tf.float32.as_datatype_enum
    lo_node = const_node(f"{node.name}/min", np.asarray(lo, np.float32), f32)
    hi_node = const_node(f"{node.name}/max", np.asarray(hi, np.float32), f32)
    deq = tf.compat.v1.NodeDef(name=node.name, op="Dequantize")
    deq.input.extend([codes.name, lo_node.name, hi_node.name])
    deq.attr["T"].type = tf.quint8.as_datatype_enum
    deq.attr["mode"].s = b"MIN_COMBINED"
    deq.attr["dtype"].type = f32
    error = float(np.abs(dequantize_array(q, lo, hi).astype(np.float64) - w.astype(np.float64)).max())
    return [codes, lo_node, hi_node, deq], error


def quantize_weights(graph_def: Any, protected: set[str]) -> StepResult:
    # A Const only a control edge keeps alive (a frozen variable's dead NoOp) is not a weight: skip it.
    read = {i.split(":")[0] for n in graph_def.node for i in n.input if not i.startswith("^")}
    nodes: list[Any] = []
    changed = 0
    max_error = 0.0
    bytes_before = bytes_after = 0
    for n in graph_def.node:
        if (
            n.op != "Const"
            or n.name in protected
            or n.name not in read
            or n.attr["dtype"].type != tf.float32.as_datatype_enum
        ):
            nodes.append(n)
            continue
        w = tf.make_ndarray(n.attr["value"].tensor)
        if w.size < MIN_ELEMENTS or not np.isfinite(w).all():
            nodes.append(n)
            continue
        replacement, error = _quantized_nodes(n, w)
        nodes.extend(replacement)
        changed += 1
        max_error = max(max_error, error)
        bytes_before += w.nbytes
        bytes_after += w.size + 8
    details = {"maxWeightError": max_error, "weightBytesBefore": bytes_before, "weightBytesAfter": bytes_after}
    return StepResult(rebuild(graph_def, nodes) if changed else graph_def, changed, details)
