"""config.pbtxt and the spec rules for OpenVINO IR (``target.backend: openvino``, or python + ``openvino.enabled``).

- openvino (openvino_backend README): ``backend: "openvino"``, default file
  ``model.xml`` (weights in ``model.bin`` beside it), CPU instances only, the
  upper-case parameters it reads (``PERFORMANCE_HINT``, ``NUM_STREAMS``); it
  refuses keys it does not know, so nothing else is written.
- python + openvino: the OpenVINO flavour's parameters (file, precision, the
  batch sizes compiled with static shapes).
Pure: no TensorFlow, no OpenVINO, no Triton (tests/triton serves the python flavour for real).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from edgeopt.errors import PublishError, SpecError
from edgeopt.spec import uses_onnx, uses_openvino
from edgeopt.triton.config import build_model_config, static_batch_sizes
from edgeopt.triton.publish import publish_version
from tests.unit.test_onnx_config import artifact, model

OV = {"backend": "openvino"}


def string_params(text: str) -> dict[str, str]:
    return dict(re.findall(r'parameters \{ key: "([^"]+)" value: \{ string_value: "([^"]*)" \} \}', text))


def test_openvino_backend_config() -> None:
    text = build_model_config(artifact("openvino"), model(OV)).render()
    assert 'backend: "openvino"' in text and "platform" not in text
    assert "kind: KIND_CPU" in text and "max_batch_size: 8" in text
    assert string_params(text) == {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}


@pytest.mark.parametrize(
    ("target", "openvino", "want"),
    [
        ({}, {}, {"inference_precision": "auto", "static_batch_sizes": "1,8"}),
        (
            {"maxBatchSize": 4},
            {"inferencePrecision": "f32"},
            {"inference_precision": "f32", "static_batch_sizes": "1,4"},
        ),
        (
            {"maxBatchSize": 8, "dynamicBatching": {"preferredBatchSizes": [2, 8]}},
            {},
            {"inference_precision": "auto", "static_batch_sizes": "1,2,8"},
        ),
        ({"maxBatchSize": 0}, {}, {"inference_precision": "auto", "static_batch_sizes": ""}),
    ],
)
def test_python_flavour_parameters(target: dict[str, Any], openvino: dict[str, Any], want: dict[str, str]) -> None:
    spec_model = model({"backend": "python", **target}, openvino={"enabled": True, **openvino})
    text = build_model_config(artifact("openvino"), spec_model).render()
    assert 'backend: "python"' in text and "kind: KIND_CPU" in text
    assert string_params(text) == {"model_format": "openvino", "openvino_file": "model.xml", **want}


@pytest.mark.parametrize(
    ("max_batch", "preferred", "want"),
    [(0, None, ()), (1, None, (1,)), (8, None, (1, 8)), (8, [4, 8], (1, 4, 8)), (16, [1], (1, 16))],
)
def test_static_batch_sizes(max_batch: int, preferred: list[int] | None, want: tuple[int, ...]) -> None:
    assert static_batch_sizes(max_batch, preferred) == want


@pytest.mark.parametrize(
    ("backend", "fmt"), [("openvino", "onnx"), ("onnxruntime", "openvino"), ("tensorflow", "openvino")]
)
def test_a_backend_serves_only_its_format(backend: str, fmt: str) -> None:
    target = {"backend": backend, **({"device": "CPU"} if backend == "onnxruntime" else {})}
    with pytest.raises(PublishError, match=f"cannot serve a {fmt} artefact"):
        build_model_config(artifact(fmt), model(target))


def test_uses_openvino() -> None:
    assert uses_openvino(model(OV).spec) and uses_onnx(model(OV).spec)
    flavour = model({"backend": "python"}, openvino={"enabled": True}).spec
    assert uses_openvino(flavour) and uses_onnx(flavour)
    assert not uses_openvino(model({"backend": "python"}).spec)
    assert not uses_openvino(model({"backend": "python"}, onnx={"enabled": True}).spec)


@pytest.mark.parametrize(
    ("target", "tensorrt", "spec", "match"),
    [
        (OV, {"enabled": True}, {}, r"spec.tensorrt.enabled: OpenVINO runs on the CPU"),
        ({**OV, "device": "GPU"}, {"enabled": False}, {}, r"spec.target.device: edgeopt's OpenVINO IR runs on the CPU"),
        (
            OV,
            {"enabled": False},
            {"openvino": {"inferencePrecision": "f32"}},
            r"spec.openvino.inferencePrecision: Triton's openvino backend has no setting",
        ),
        (
            {"backend": "onnxruntime", "device": "CPU"},
            {"enabled": False},
            {"openvino": {"enabled": True}},
            r"spec.openvino.enabled: backend onnxruntime does not serve OpenVINO IR",
        ),
        (
            {"backend": "python"},
            {"enabled": False},
            {"openvino": {"enabled": True}, "onnx": {"enabled": True}},
            r"serves either the ONNX export .* or OpenVINO IR",
        ),
        (
            OV,
            {"enabled": False},
            {"openvino": {"inferencePrecision": "bf16"}},
            r"spec.openvino.inferencePrecision: 'bf16' is not one of auto, f32",
        ),
        (OV, {"enabled": False, "precision": "INT8"}, {}, r"INT8 needs calibration data"),
    ],
)
def test_spec_rules(target: dict[str, Any], tensorrt: dict[str, Any], spec: dict[str, Any], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        model(target, tensorrt, **spec)


def test_publish_carries_the_weights_beside_the_graph(tmp_path: Path) -> None:
    xml = tmp_path / "work" / "model.xml"
    xml.parent.mkdir()
    xml.write_text("<net/>")
    spec_model = model({**OV, "repository": f"file://{tmp_path / 'repo'}"})
    with pytest.raises(PublishError, match=r"model.bin: missing beside model.xml"):
        publish_version(artifact("openvino", savedmodel_dir=xml), spec_model)
    assert not any((tmp_path / "repo" / "mnet").glob("[0-9]*")), "a failed publish leaves no version"
    (xml.parent / "model.bin").write_bytes(b"weights")
    version = publish_version(artifact("openvino", savedmodel_dir=xml), spec_model).version_dir
    assert (version / "model.xml").read_text() == "<net/>" and (version / "model.bin").read_bytes() == b"weights"
