"""What stages hand each other: a graph plus the endpoints that make its signature.

An :class:`Endpoint` ties a signature key (what Triton clients use) to a
tensor in the current GraphDef.  Keys never change from load to artefact;
tensor names may (freezing a SavedModel renames everything), which is why
every stage passes both.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeopt.artifact import TensorInfo

#: Runs a model on named numpy inputs and returns named numpy outputs.
ModelFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class Endpoint:
    key: str  # signature key
    tensor: str  # "node:0" in the current graph
    dtype: str  # Triton dtype
    shape: list[int] | None  # -1 for unknown dims; None for unknown rank

    @property
    def node(self) -> str:
        return self.tensor.rsplit(":", 1)[0]

    def info(self) -> TensorInfo:
        return TensorInfo(name=self.key, dtype=self.dtype, shape=list(self.shape) if self.shape is not None else [])


@dataclass
class FrozenModel:
    """A GraphDef with no variables left, and its signature."""

    graph_def: Any  # tf.compat.v1.GraphDef
    inputs: list[Endpoint]
    outputs: list[Endpoint]
    details: dict[str, Any] = field(default_factory=dict)


def sanitize_key(tensor_or_node: str) -> str:
    """A signature key from a node/tensor name: ':0' dropped, other ':N' → '_N', the rest [A-Za-z0-9_]."""
    name = tensor_or_node
    if name.endswith(":0"):
        name = name[:-2]
    name = re.sub(r"[^A-Za-z0-9_]", "_", name.replace(":", "_"))
    if not name or not (name[0].isalpha() or name[0] == "_"):
        name = "t_" + name
    return name


def tensor_name(name: str) -> str:
    """'y' → 'y:0'; 'y:1' stays."""
    return name if re.search(r":\d+$", name) else f"{name}:0"


def op_counts(graph_def: Any) -> dict[str, Any]:
    """Total and by-type op counts of the top-level graph (function bodies counted apart)."""
    by_type = Counter(n.op for n in graph_def.node)
    fn_nodes = sum(len(f.node_def) for f in graph_def.library.function)
    return {
        "total": len(graph_def.node),
        "byType": dict(sorted(by_type.items())),
        "functionNodes": fn_nodes,
    }
