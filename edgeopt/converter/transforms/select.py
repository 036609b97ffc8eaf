"""Selects on a constant condition take their branch: how a bound ``phase_train``/learning phase folds away.

``tf.where(phase_train, train_branch, inference_branch)`` leaves a
Select/SelectV2 whose condition became a Const when the placeholder was
bound.  With a scalar condition and two branches of the same static shape
the result *is* one branch, so the Select becomes an Identity of it (the
other branch is then unused and stripped).  Anything that could broadcast
is left alone.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from edgeopt.converter.transforms.graph import StepResult, const_value, copy_node, data_inputs, rebuild

SELECT_OPS = ("Select", "SelectV2")


def _same_static_shape(a: Any, b: Any) -> bool:
    if a.rank is None or b.rank is None or a.rank != b.rank:
        return False
    return all(x == y for x, y in zip(a.as_list(), b.as_list(), strict=True))


def take_constant_selects(graph_def: Any, protected: set[str]) -> StepResult:
    by_name = {n.name: n for n in graph_def.node}
    candidates = [n for n in graph_def.node if n.op in SELECT_OPS and len(data_inputs(n)) == 3]
    if not candidates:
        return StepResult(graph_def, 0)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    replaced: dict[str, Any] = {}
    for n in candidates:
        cond_inp, then_inp, else_inp = data_inputs(n)
        cond = const_value(by_name, cond_inp)
        if cond is None or cond.dtype != bool or cond.size != 1:
            continue
        then_t, else_t = (graph.get_tensor_by_name(i if ":" in i else f"{i}:0") for i in (then_inp, else_inp))
        if not _same_static_shape(then_t.shape, else_t.shape):
            continue
        ident = copy_node(n)
        ident.op = "Identity"
        del ident.input[:]
        ident.input.extend(
            [then_inp if bool(cond.reshape(())) else else_inp] + [i for i in n.input if i.startswith("^")]
        )
        dtype = n.attr["T"].type
        ident.ClearField("attr")
        ident.attr["T"].type = dtype
        replaced[n.name] = ident
    if not replaced:
        return StepResult(graph_def, 0)
    return StepResult(rebuild(graph_def, [replaced.get(n.name, n) for n in graph_def.node]), len(replaced))
