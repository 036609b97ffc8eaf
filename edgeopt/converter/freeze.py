"""Stage 2 — freeze: turn variables into constants.

TF 2.x's ``freeze_graph`` tool crashes on resource variables, so this
freezes the way that works for both kinds: graph formats from the live
session that load restored (``convert_variables_to_constants`` also keeps
only what the outputs need), SavedModel/Keras signature functions with
``convert_variables_to_constants_v2`` (which inlines the function calls).
"""

from __future__ import annotations

import os
from typing import Any

from edgeopt.converter import inline
from edgeopt.converter.graph_model import Endpoint, FrozenModel
from edgeopt.converter.load import VARIABLE_OPS, LoadedModel
from edgeopt.errors import ConversionError, InputError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
from tensorflow.python.framework import convert_to_constants
from tensorflow.python.util import deprecation


def _freeze_session(loaded: LoadedModel) -> Any:
    sess = loaded.session
    output_nodes = sorted({o.node for o in loaded.outputs})
    graph_def = sess.graph.as_graph_def()
    try:
        # The TF1 API is deliberate here (resource-variable graphs); its deprecation
        # notice would only clutter every Job log.
        with deprecation.silence():
            return tf.compat.v1.graph_util.convert_variables_to_constants(sess, graph_def, output_nodes)
    except (tf.errors.OpError, ValueError, AssertionError) as exc:
        raise ConversionError(f"freezing the graph failed: {str(exc).splitlines()[0][:400]}") from exc


def _freeze_function(loaded: LoadedModel, lower_control_flow: bool) -> tuple[Any, list[Endpoint], list[Endpoint]]:
    func = loaded.function
    try:
        frozen = convert_to_constants.convert_variables_to_constants_v2(func, lower_control_flow=lower_control_flow)
    except (tf.errors.OpError, ValueError) as exc:
        raise ConversionError(f"freezing the signature function failed: {str(exc).splitlines()[0][:400]}") from exc
    graph_def = frozen.graph.as_graph_def()
    placeholders = [t for t in frozen.inputs if t.dtype != tf.resource]
    by_op = {t.op.name: t for t in placeholders}
    # Signature placeholders are named after their keys; fall back to flattening order (sorted keys).
    inputs = []
    for i, ep in enumerate(loaded.inputs):
        t = by_op[ep.key] if ep.key in by_op else placeholders[i]
        inputs.append(Endpoint(ep.key, t.name, ep.dtype, ep.shape))
    out_specs = func.structured_outputs
    keys = sorted(out_specs) if isinstance(out_specs, dict) else [f"output_{i}" for i in range(len(frozen.outputs))]
    tensor_by_key = dict(zip(keys, [t.name for t in frozen.outputs], strict=False))
    outputs = [Endpoint(ep.key, tensor_by_key[ep.key], ep.dtype, ep.shape) for ep in loaded.outputs]
    return graph_def, inputs, outputs


#: The attribute ``tf.custom_gradient`` (``tf.nn.silu``/swish, Keras 3 activations) puts on its IdentityN
#: markers.  A SavedModel save looks the gradient up by it and fails on the original's captures
#: ("Found invalid capture ... when saving custom gradients"); inference never needs a gradient.
GRADIENT_MARKER = "_gradient_op_type"


def strip_gradient_markers(graph_def: Any) -> int:
    """Remove the custom-gradient markers from every node (functions too); return how many went."""
    nodes = [*graph_def.node, *(n for f in graph_def.library.function for n in f.node_def)]
    marked = [n for n in nodes if GRADIENT_MARKER in n.attr]
    for node in marked:
        del node.attr[GRADIENT_MARKER]
    return len(marked)


def freeze(loaded: LoadedModel, *, for_onnx: bool = False) -> FrozenModel:
    """The loaded model with constants for variables.

    ``for_onnx`` keeps functional While/If, which tf2onnx maps to ONNX Loop/If (and Keras LSTM/GRU to
    an ONNX LSTM): lowered to Enter/Exit/Merge frames, a TensorList loop has no ONNX form.  It also
    inlines the calls TensorFlow keeps for XLA (``inline.py``).  The TF path lowers, as TensorFlow
    itself does before it runs a graph, and keeps those calls.
    """
    if loaded.format == "FrozenGraph":
        # Already frozen: nothing to convert, and nothing stripped here either, so the
        # op counts and the transforms show what optimization really removed.
        graph_def = loaded.session.graph.as_graph_def()
        inputs, outputs = list(loaded.inputs), list(loaded.outputs)
    elif loaded.session is not None:
        graph_def = _freeze_session(loaded)
        inputs, outputs = list(loaded.inputs), list(loaded.outputs)
    else:
        graph_def, inputs, outputs = _freeze_function(loaded, lower_control_flow=not for_onnx)
        if for_onnx:
            graph_def = inline.inline_calls(graph_def, outputs)
    strip_gradient_markers(graph_def)
    names = {n.name for n in graph_def.node}
    unused = [e.key for e in inputs if e.node not in names]
    if unused:
        raise InputError(
            f"spec.source.inputs: {', '.join(unused)} do(es) not feed any of the outputs "
            f"({', '.join(e.key for e in outputs)}); name the placeholders the outputs depend on"
        )
    left = [n.name for n in graph_def.node if n.op in VARIABLE_OPS]
    if left:
        raise ConversionError(f"variables survived freezing: {', '.join(left[:5])}")
    # The spec may narrow placeholder shapes (e.g. [-1, 224, 224, 3] for [-1, -1, -1, 3]).
    return FrozenModel(graph_def, inputs, outputs)
