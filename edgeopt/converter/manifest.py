"""A starter OptimizedModel from what ``edgeopt inspect`` found, as YAML kubectl reads the same way.

Every output name is written double-quoted: YAML 1.1 (kubectl's parser)
reads a bare ``y``, ``n``, ``on`` or ``off`` as a boolean, and the guide's
output is literally ``y``.  Placeholders a likely output needs become
inputs, except the well-known training-only ones (``keep_prob``, learning
phase, ``is_training``), which become constants with their inference value.
Standard library + PyYAML only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from edgeopt.spec import API_VERSION, KIND

#: Placeholder base names and the value inference binds them to.
TRAINING_ONLY = {"keep_prob": 1.0, "keep_probability": 1.0, "dropout_keep_prob": 1.0}
TRAINING_FLAGS = ("phase_train", "is_training", "training", "keras_learning_phase", "learning_phase")


class _Quoted(str):
    """A string always emitted double-quoted."""


yaml.SafeDumper.add_representer(
    _Quoted, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style='"')
)


def _name(path: str) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", Path(path).stem.lower()).strip("-")
    return (stem or "model")[:50]


def _training_value(name: str, dtype: str | None) -> Any:
    base = name.rsplit("/", 1)[-1]
    if base in TRAINING_ONLY:
        return TRAINING_ONLY[base]
    if base in TRAINING_FLAGS and dtype == "BOOL":
        return False
    return None


def _graph_source(info: dict[str, Any]) -> dict[str, Any]:
    graph = Path(info["path"])
    source: dict[str, Any] = {"uri": f"file://{graph.parent}", "format": info["format"], "graph": graph.name}
    if info.get("checkpoint"):
        source["checkpoint"] = info["checkpoint"]
    outputs = info["likelyOutputs"][:1]
    needed = set(outputs[0]["needs"]) if outputs else set()
    inputs, constants = [], {}
    for p in info["placeholders"]:
        value = _training_value(p["name"], p.get("dtype"))
        if value is not None:
            constants[p["name"]] = value
        elif p["name"] in needed and p.get("op") != "PlaceholderWithDefault":
            shape = p.get("shape")
            inputs.append(
                {"name": p["name"], "dtype": p.get("dtype") or "FP32", "shape": [] if shape is None else shape}
            )
    source["inputs"] = inputs
    source["outputs"] = [_Quoted(o["name"]) for o in outputs]
    if constants:
        source["constants"] = constants
    return source


def starter(info: dict[str, Any]) -> dict[str, Any]:
    """The manifest as data; ``render`` turns it into YAML."""
    if info["format"] in ("Checkpoint", "FrozenGraph"):
        source = _graph_source(info)
    elif info["format"] == "SavedModel":
        sigs: list[str] = list(info["signatures"])
        sig = "serving_default" if "serving_default" in sigs else (sigs[0] if sigs else None)
        source = {"uri": f"file://{info['path']}", "format": "SavedModel"}
        if sig:
            source["signature"] = sig
    else:
        source = {"uri": f"file://{info['path']}", "format": "Keras"}
    name = _name(info["path"])
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "source": source,
            "tensorrt": {"enabled": False},
            "target": {"repository": "pvc://triton-models", "modelName": name.replace("-", "_")},
        },
    }


def render(manifest: dict[str, Any]) -> str:
    header = (
        "# Starter manifest from `edgeopt inspect`: check inputs/outputs, then `edgeopt convert -f` or kubectl apply.\n"
    )
    return header + yaml.safe_dump(manifest, sort_keys=False, default_flow_style=None)
