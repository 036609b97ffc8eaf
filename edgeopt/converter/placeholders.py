"""Placeholders that are not inputs: bound to constants before anything runs.

Training graphs carry placeholders inference never feeds for real:
``keep_prob`` (dropout), ``phase_train``/``is_training``, Keras's learning
phase.  TensorFlow's ``placeholder_to_const`` idea: turn them into Consts
*before* freezing, so the training-only branches fold away.

- ``spec.source.constants`` names them and their values;
- a ``PlaceholderWithDefault`` that is not an input takes its default;
- Keras learning-phase placeholders become ``false``.

An output that still depends on some other placeholder cannot be served;
``check_fed`` says which placeholder, its dtype and shape, and the path to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import tensorflow as tf

from edgeopt.errors import InputError

LEARNING_PHASE_NAMES = ("keras_learning_phase",)


def _is_learning_phase(node: Any) -> bool:
    base = node.name.rsplit("/", 1)[-1]
    return base in LEARNING_PHASE_NAMES and node.attr["dtype"].type == tf.bool.as_datatype_enum


def _declared_shape(node: Any) -> list[int] | None:
    if "shape" not in node.attr or node.attr["shape"].shape.unknown_rank:
        return None
    return [int(d.size) for d in node.attr["shape"].shape.dim]


def _const_value(node: Any, value: Any) -> np.ndarray:
    dtype = tf.dtypes.as_dtype(node.attr["dtype"].type)
    where = f"spec.source.constants.{node.name}"
    try:
        array = np.asarray(value, dtype=dtype.as_numpy_dtype)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{where}: {value!r} does not fit the placeholder's dtype {dtype.name} ({exc})") from exc
    shape = _declared_shape(node)
    if shape is not None:
        if array.size == 1 and all(d == 1 for d in shape if d >= 0) and -1 not in shape:
            array = array.reshape(shape)
        fits = array.ndim == len(shape) and all(d < 0 or d == a for d, a in zip(shape, array.shape, strict=True))
        if not fits:
            raise InputError(
                f"{where}: value of shape {list(array.shape)} does not fit the placeholder's shape {shape}"
            )
    return array


def _to_const(node: Any, array: np.ndarray) -> None:
    dtype = node.attr["dtype"].type
    node.op = "Const"
    del node.input[:]
    node.ClearField("attr")
    node.attr["dtype"].type = dtype
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(array, dtype=tf.dtypes.as_dtype(dtype)))


def bind_placeholders(graph_def: Any, inputs: Iterable[str], constants: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Rewrite ``graph_def`` in place; return what became constant (for the report)."""
    inputs = set(inputs)
    constants = dict(constants or {})
    by_name = {n.name: n for n in graph_def.node}
    unknown = [
        k for k in constants if k not in by_name or by_name[k].op not in ("Placeholder", "PlaceholderWithDefault")
    ]
    if unknown:
        candidates = [n.name for n in graph_def.node if n.op in ("Placeholder", "PlaceholderWithDefault")]
        raise InputError(
            f"spec.source.constants.{unknown[0]}: no placeholder of that name in the graph; "
            f"its placeholders are: {', '.join(candidates) or 'none'}"
        )
    bound: list[dict[str, Any]] = []
    for node in graph_def.node:
        if node.name in inputs or node.op not in ("Placeholder", "PlaceholderWithDefault"):
            continue
        if node.name.startswith("save/") and node.name not in constants:
            continue  # the Saver's filename placeholders: bookkeeping restore needs as it is
        entry = {"name": node.name, "dtype": tf.dtypes.as_dtype(node.attr["dtype"].type).name}
        if node.name in constants:
            _to_const(node, _const_value(node, constants[node.name]))
            bound.append({**entry, "value": constants[node.name], "from": "spec.source.constants"})
        elif node.op == "PlaceholderWithDefault":
            default = node.input[0]
            node.op = "Identity"
            del node.input[:]
            node.input.append(default)
            for key in [k for k in node.attr if k not in ("dtype",)]:
                del node.attr[key]
            node.attr["T"].type = node.attr["dtype"].type
            del node.attr["dtype"]
            bound.append({**entry, "value": f"default ({default})", "from": "PlaceholderWithDefault"})
        elif _is_learning_phase(node):
            _to_const(node, np.asarray(False))
            bound.append({**entry, "value": False, "from": "Keras learning phase"})
    return bound


def _path(by_name: dict[str, Any], start: str, target: str, stop: set[str]) -> list[str] | None:
    """Node names from ``start`` back to ``target`` (depth-first through data and control inputs)."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        name, path = stack.pop()
        if name == target:
            return path
        if name in seen or name in stop or name not in by_name:
            continue
        seen.add(name)
        for i in by_name[name].input:
            stack.append((i.lstrip("^").split(":")[0], [*path, i.lstrip("^").split(":")[0]]))
    return None


def check_fed(graph_def: Any, inputs: Iterable[str], outputs: Iterable[str]) -> None:
    """InputError if an output depends on a placeholder that is neither an input nor a constant."""
    inputs = set(inputs)
    by_name = {n.name: n for n in graph_def.node}
    for out in outputs:
        for node in graph_def.node:
            if node.op != "Placeholder" or node.name in inputs:
                continue
            path = _path(by_name, out, node.name, inputs)
            if path is None:
                continue
            dtype = tf.dtypes.as_dtype(node.attr["dtype"].type).name
            shape = _declared_shape(node)
            raise InputError(
                f"output {out!r} depends on placeholder {node.name!r} ({dtype}, shape "
                f"{'unknown' if shape is None else shape}), "
                f"which is neither an input nor a constant (path: {' <- '.join(path)}); add it to "
                f"spec.source.inputs if clients feed it, or to spec.source.constants with its inference value "
                f"(e.g. keep_prob: 1.0)"
            )
