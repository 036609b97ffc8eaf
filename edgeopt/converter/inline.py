"""Inline the function calls the freeze leaves, for the ONNX path.

``convert_variables_to_constants_v2`` inlines every call TensorFlow lets it,
but not a call marked for XLA (``_XlaMustCompile``) or ``_noinline``.  Keras
3 compiles some layers that way on the TensorFlow backend: a grouped Conv2D
(ConvNeXt's depthwise ``Conv2D(groups=channels)``, since TensorFlow's CPU
kernel has no groups) runs as a ``jit_compile=True`` function.  tf2onnx
cannot convert a ``StatefulPartitionedCall``, but it does convert the plain
Conv2D inside (to an ONNX Conv with ``group``), so these calls are opened up
with TensorFlow's own inliner (Grappler's function optimizer) once the marks
are gone.  The TF path keeps the calls: there XLA runs what the CPU kernel
cannot.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from edgeopt.converter.graph_model import Endpoint
from edgeopt.errors import ConversionError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

CALL_OPS = ("StatefulPartitionedCall", "PartitionedCall")
#: What keeps TensorFlow's inliner away from a call (on the node or on its FunctionDef).
NO_INLINE_MARKS = ("_XlaMustCompile", "_noinline", "_xla_compile_id")


def calls(graph_def: Any) -> list[Any]:
    return [n for n in graph_def.node if n.op in CALL_OPS]


def _unmark(graph_def: Any) -> None:
    for node in calls(graph_def):
        for mark in NO_INLINE_MARKS:
            node.attr.pop(mark, None)
    for function in graph_def.library.function:
        for mark in NO_INLINE_MARKS:
            function.attr.pop(mark, None)
    for node in graph_def.node:  # keep functional While/If as they are (the freeze did not lower them)
        if node.op in ("While", "StatelessWhile", "If", "StatelessIf"):
            node.attr["_lower_using_switch_merge"].b = False


def inline_calls(graph_def: Any, outputs: Sequence[Endpoint]) -> Any:
    """``graph_def`` with its remaining top-level function calls inlined (the same object when none)."""
    if not calls(graph_def):
        return graph_def
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
    from tensorflow.python.grappler import tf_optimizer

    _unmark(graph_def)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
        meta = tf.compat.v1.train.export_meta_graph(graph_def=graph_def, graph=graph)
    fetch = meta_graph_pb2.CollectionDef()
    fetch.node_list.value.extend(e.tensor for e in outputs)
    meta.collection_def["train_op"].CopyFrom(fetch)  # what Grappler must keep
    config = config_pb2.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.min_graph_nodes = -1
    rewrite.optimizers.append("function")
    try:
        inlined = tf_optimizer.OptimizeGraph(config, meta)
    except (tf.errors.OpError, ValueError) as exc:
        raise ConversionError(f"inlining the function calls failed: {str(exc).splitlines()[0][:400]}") from exc
    return inlined
