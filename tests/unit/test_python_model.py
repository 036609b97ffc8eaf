"""The python-backend files of a published version: model.py finds what it imports beside it (no TF, no Triton).

Triton's Python backend stub appends the version directory to ``sys.path``
and imports ``<version>.model``; a module model.py imports that is neither
the stdlib nor in the stub's environment must therefore be published in that
same version directory, or the load fails only once Triton tries it.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.spec import parse_manifest
from edgeopt.triton.publish import publish_version
from edgeopt.triton.python_model import BATCHING_PY, HELPERS, TEMPLATES, write_python_model
from tests.fixtures.triton import file_artifact, optimized_model

#: What the stub's environment provides (the Dockerfile's triton images, the pytriton stub's venv).
STUB_ENVIRONMENT = {"numpy", "tensorflow", "onnxruntime", "openvino", "triton_python_backend_utils"}


def version_local_imports(source: str) -> set[str]:
    """Top-level modules ``source`` imports that only its own folder can provide."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - STUB_ENVIRONMENT


def publish_flavour(flavour: str, tmp_path: Path) -> Path:
    art = file_artifact(tmp_path / "sm")
    if flavour == "savedmodel":
        return publish_version(art, optimized_model("m", tmp_path / "repo")).version_dir
    onnx_file = tmp_path / f"model.{'xml' if flavour == 'openvino' else flavour}"
    onnx_file.write_bytes(b"not parsed by the publisher")
    onnx_file.with_suffix(".bin").write_bytes(b"weights")
    model = parse_manifest(
        {
            "apiVersion": "edgeopt.io/v1alpha1",
            "kind": "OptimizedModel",
            "metadata": {"name": "m"},
            "spec": {
                "source": {"uri": "file:///unused", "format": "SavedModel"},
                "tensorrt": {"enabled": False},
                flavour: {"enabled": True},
                "target": {"repository": f"file://{tmp_path / 'repo'}", "modelName": "m", "backend": "python"},
            },
        }
    )
    art = dataclasses.replace(art, savedmodel_dir=onnx_file, model_format=flavour)
    return publish_version(art, model).version_dir


@pytest.mark.parametrize("flavour", sorted(TEMPLATES))
def test_published_version_carries_every_module_model_py_imports(flavour: str, tmp_path: Path) -> None:
    version_dir = publish_flavour(flavour, tmp_path)
    local = version_local_imports((version_dir / "model.py").read_text())
    helpers = {BATCHING_PY, *HELPERS.get(flavour, ())}
    assert local == {h.removesuffix(".py") for h in helpers}, "a new version-local import needs publishing too"
    for name in local:
        assert (version_dir / f"{name}.py").is_file(), f"{name}.py is missing from the published version"
        assert version_local_imports((version_dir / f"{name}.py").read_text()) == set()
    # the stub must find bytecode for every module it imports, or it writes __pycache__ into the repository
    cached = {p.name.split(".")[0] for p in (version_dir / "__pycache__").iterdir()}
    assert cached == {"model", *local}


def test_unknown_flavour_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plan"):
        write_python_model(tmp_path, flavour="plan")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the batching module itself


class FakeTensor:
    def __init__(self, name: str, value: np.ndarray) -> None:
        self.name, self.value = name, value

    def as_numpy(self) -> np.ndarray:
        return self.value


class FakeResponse:
    def __init__(self, output_tensors: list[FakeTensor] | None = None, error: str | None = None) -> None:
        self.outputs = {t.name: t.value for t in output_tensors or []}
        self.error = error


@pytest.fixture
def batching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The published ``_edgeopt_batching`` with a stand-in for Triton's ``triton_python_backend_utils``."""
    pb_utils = types.ModuleType("triton_python_backend_utils")
    pb_utils.get_input_tensor_by_name = lambda request, name: request.get(name)  # type: ignore[attr-defined]
    pb_utils.Tensor = FakeTensor  # type: ignore[attr-defined]
    pb_utils.InferenceResponse = FakeResponse  # type: ignore[attr-defined]
    pb_utils.TritonError = str  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb_utils)
    write_python_model(tmp_path)
    spec = importlib.util.spec_from_file_location("_edgeopt_batching", tmp_path / BATCHING_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module


def request(x: np.ndarray) -> dict[str, FakeTensor]:
    return {"x": FakeTensor("x", x)}


def test_merged_requests_run_once_and_get_their_own_rows(batching: Any) -> None:
    calls = []

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(feed["x"].shape)
        return {"y": feed["x"] + 1}

    xs = [np.full((n, 2), i, dtype=np.float32) for i, n in enumerate((1, 3, 2))]
    responses = batching.execute([request(x) for x in xs], ["x"], run, max_batch=8)
    assert calls == [(6, 2)]
    for x, r in zip(xs, responses, strict=True):
        assert r.error is None
        np.testing.assert_array_equal(r.outputs["y"], x + 1)


def test_requests_that_cannot_merge_run_alone_and_fail_alone(batching: Any) -> None:
    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if (feed["x"] < 0).any():
            raise ValueError("negative")
        return {"y": feed["x"] * 2}

    good, bad, wide = np.ones((1, 2)), -np.ones((1, 2)), np.ones((1, 3))
    responses = batching.execute([request(good), request(bad), request(wide), {}], ["x"], run, max_batch=8)
    np.testing.assert_array_equal(responses[0].outputs["y"], good * 2)
    assert responses[1].error == "ValueError: negative"
    np.testing.assert_array_equal(responses[2].outputs["y"], wide * 2)
    assert responses[3].error == "ValueError: input 'x' is missing from the request"


def test_outputs_without_the_batch_dim_are_not_split(batching: Any) -> None:
    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"total": np.asarray(feed["x"].sum())}

    responses = batching.execute([request(np.ones((1, 2))), request(np.ones((2, 2)))], ["x"], run, max_batch=8)
    assert [float(r.outputs["total"]) for r in responses] == [2.0, 4.0]
