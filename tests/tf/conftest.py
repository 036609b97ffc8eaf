"""Fixtures for the TensorFlow tests: the sample models, built once per session."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edgeopt.spec import OptimizedModel, parse_manifest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The whole zoo runs only when asked for (``-m zoo``); otherwise its ``zoo(quick=True)`` cases run."""
    if "zoo" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="the whole model zoo runs with -m zoo")
    for item in items:
        marker = item.get_closest_marker("zoo")
        if marker is not None and not marker.kwargs.get("quick"):
            item.add_marker(skip)


def manifest_dict(name: str, source: dict[str, Any], repository: Path, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": source,
        "tensorrt": {"enabled": False},
        "target": {"repository": f"file://{repository}", "modelName": name},
    }
    body.update(spec)
    return {"apiVersion": "edgeopt.io/v1alpha1", "kind": "OptimizedModel", "metadata": {"name": name}, "spec": body}


def make_model(name: str, source: dict[str, Any], repository: Path, **spec: Any) -> OptimizedModel:
    return parse_manifest(manifest_dict(name, source, repository, **spec))


def write_manifest(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def add_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeopt_dev.samples import write_add_checkpoint

    d = tmp_path_factory.mktemp("add")
    write_add_checkpoint(d)
    return d


@pytest.fixture(scope="session")
def convbn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeopt_dev.samples import write_conv_bn_graph

    d = tmp_path_factory.mktemp("convbn")
    write_conv_bn_graph(d)
    return d


@pytest.fixture(scope="session")
def keras_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small Keras model (Conv+BN+Dropout+Dense+BN) as a SavedModel, .keras and .h5."""
    from edgeopt_dev.samples import write_keras_model

    d = tmp_path_factory.mktemp("keras")
    write_keras_model(d, "savedmodel")
    write_keras_model(d, "keras")
    write_keras_model(d, "h5")
    return d


def add_source(d: Path, graph: str = "my_graph.pb") -> dict[str, Any]:
    return {
        "uri": f"file://{d}",
        "format": "Checkpoint",
        "graph": graph,
        "checkpoint": "test_model",
        "inputs": [{"name": "x", "dtype": "FP32", "shape": [-1, 1]}],
        "outputs": ["y"],
    }


def convbn_source(d: Path) -> dict[str, Any]:
    return {
        "uri": f"file://{d}",
        "format": "FrozenGraph",
        "graph": "convbn_frozen.pb",
        "inputs": [{"name": "input", "dtype": "FP32", "shape": [-1, 16, 16, 3]}],
        "outputs": ["output"],
    }
