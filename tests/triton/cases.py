"""The three sample models as (artifact, inputs, TF reference outputs) for the serving tests.

The artifact comes from the real converter (``convert_model``); the expected
outputs from TensorFlow running the *original* model (checkpoint session,
frozen graph, Keras SavedModel), so the whole path is checked, not a copy of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.artifact import Artifact
from edgeopt.spec import OptimizedModel, parse_manifest
from tests.triton import tf_models as m


@dataclass
class Case:
    kind: str
    artifact: Artifact
    feed: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]


def source_manifest(kind: str, info: dict[str, Any], repository: Path, name: str, **target: Any) -> OptimizedModel:
    src: dict[str, Any] = {"uri": f"file://{info['dir']}", "format": info["format"]}
    if kind == "add":
        src.update(graph=info["graph"], checkpoint=info["checkpoint"], inputs=info["inputs"], outputs=info["outputs"])
    elif kind == "convbn":
        src.update(graph=info["graph"], inputs=info["inputs"], outputs=info["outputs"])
    else:
        src["uri"] = f"file://{Path(info['dir']) / info['path']}"
    return parse_manifest(
        {
            "apiVersion": "edgeopt.io/v1alpha1",
            "kind": "OptimizedModel",
            "metadata": {"name": name},
            "spec": {
                "source": src,
                "tensorrt": {"enabled": False},
                "target": {"repository": f"file://{repository}", "modelName": name, **target},
            },
        }
    )


def reference(kind: str, info: dict[str, Any], x: np.ndarray) -> dict[str, np.ndarray]:
    d = Path(info["dir"])
    if kind == "add":
        (y,) = m.run_checkpoint(d / info["meta"], d / info["checkpoint"], {"x:0": x}, ["y:0"])
        return {"y": y}
    if kind == "convbn":
        (y,) = m.run_frozen_graph(d / info["graph"], {"input:0": x}, ["output:0"])
        return {"output": y}
    return m.run_savedmodel(d / info["path"], {info["inputs"][0]["name"]: x})


def sample_input(kind: str, info: dict[str, Any], batch: int, seed: int = 0) -> np.ndarray:
    shape = [batch, *info["inputs"][0]["shape"][1:]]
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def build_case(kind: str, info: dict[str, Any], model: OptimizedModel, workdir: Path, batch: int = 3) -> Case:
    x = sample_input(kind, info, batch)
    expected = reference(kind, info, x)
    from edgeopt.converter.pipeline import convert_model

    artifact = convert_model(model, workdir)
    (in_name,) = [t.name for t in artifact.inputs]
    return Case(kind, artifact, {in_name: x}, expected)
