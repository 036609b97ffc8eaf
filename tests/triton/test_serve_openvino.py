"""OpenVINO IR served by the real Triton: TF → tf2onnx → OpenVINO (FP32 / NNCF INT8) → the python flavour.

The Triton here (2.51 from nvidia-pytriton) has only the Python backend, so
``backend: python`` + ``openvino.enabled`` is how an OpenVINO version answers
here (``backend: openvino`` writes the config of Triton's own openvino backend,
which NGC's images have); the answers are compared with TensorFlow running the
*original* model, at batch 1 and at the largest batch (static shapes) and at a
size in between (the dynamic model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.spec import parse_manifest
from edgeopt.triton.client import TritonClient
from edgeopt.triton.publish import publish_version
from tests.triton.cases import reference, sample_input, source_manifest

pytest.importorskip("openvino", reason="the converter extra installs openvino")
pytestmark = [pytest.mark.triton, pytest.mark.tf]


def openvino_manifest(kind: str, info: dict[str, Any], repo: Path, name: str, **spec: Any) -> Any:
    base = source_manifest(kind, info, repo, name)
    source = {k: v for k, v in vars(base.spec.source).items() if v not in (None, [], "serving_default")}
    source["inputs"] = [vars(t) for t in base.spec.source.inputs]
    target = {"repository": f"file://{repo}", "modelName": name, "backend": "python", "maxBatchSize": 4}
    doc = {
        "apiVersion": "edgeopt.io/v1alpha1",
        "kind": "OptimizedModel",
        "metadata": {"name": name},
        "spec": {"source": source, "target": target, "openvino": {"enabled": True}, **spec},
    }
    return parse_manifest(doc)


@pytest.mark.parametrize("precision", ["FP32", "INT8"])
def test_openvino_version_answers_like_tensorflow(
    precision: str,
    samples: dict[str, dict[str, Any]],
    triton_repository: Path,
    triton_client: TritonClient,
    tmp_path: Path,
) -> None:
    from edgeopt.converter.pipeline import convert_model

    kind, info = "convbn", samples["convbn"]
    name = f"openvino-{kind}-{precision.lower()}"
    calib = tmp_path / "calibration.npz"
    input_name = info["inputs"][0]["name"]
    np.savez(calib, **{input_name: sample_input(kind, info, 32, seed=7)})
    model = openvino_manifest(
        kind,
        info,
        triton_repository,
        name,
        tensorrt={"enabled": False, "precision": precision, "calibration": {"uri": f"file://{calib}", "samples": 32}},
        validation={"int8Rtol": 0.2, "int8Atol": 0.1, "minTop1Agreement": 0.5},
    )
    artifact = convert_model(model, tmp_path / "work")
    assert artifact.model_format == "openvino"
    result = publish_version(artifact, model)
    version_dir = result.version_dir
    assert sorted(p.name for p in version_dir.iterdir() if not p.name.startswith(".")) == [
        "__pycache__",
        "_edgeopt_batching.py",
        "_edgeopt_openvino.py",
        "model.bin",
        "model.py",
        "model.xml",
        "report.json",
    ]
    model_py = (version_dir / "model.py").read_text()
    assert "import tensorflow" not in model_py and "import onnxruntime" not in model_py
    config = (version_dir.parent / "config.pbtxt").read_text()
    assert 'backend: "python"' in config and '"static_batch_sizes" value: { string_value: "1,4" }' in config

    triton_client.load(name)
    assert triton_client.is_model_ready(name, result.version)
    (in_name,) = [t.name for t in artifact.inputs]
    exact = precision == "FP32" and artifact.report["onnx"]["openvino"]["runtimePrecision"] == "f32"
    for batch in (1, 3, 4):  # static 1 and 4, the dynamic model for 3
        x = sample_input(kind, info, batch, seed=batch)
        want = reference(kind, info, x)
        got = triton_client.infer(name, {in_name: x})
        assert set(got) == set(want)
        for out, ref in want.items():
            assert got[out].shape == ref.shape
            np.testing.assert_allclose(got[out], ref, rtol=1e-4 if exact else 0.1, atol=1e-5 if exact else 0.1)
    triton_client.unload(name)


def test_openvino_backend_config_parses_and_names_the_missing_backend(
    samples: dict[str, dict[str, Any]], triton_repository: Path, triton_client: TritonClient, tmp_path: Path
) -> None:
    """``backend: openvino`` (Triton's openvino backend): this Triton parses the config, then lacks the backend."""
    from edgeopt.converter.pipeline import convert_model
    from edgeopt.errors import ServingError

    info, name = samples["convbn"], "openvino-native"
    doc = openvino_manifest("convbn", info, triton_repository, name, tensorrt={"enabled": False, "precision": "FP32"})
    doc.spec.target.backend, doc.spec.openvino.enabled = "openvino", False
    result = publish_version(convert_model(doc, tmp_path / "work"), doc)
    text = result.config_path.read_text()
    assert 'backend: "openvino"' in text and "model_warmup" in text and "KIND_CPU" in text
    with pytest.raises(ServingError) as err:
        triton_client.load(name)
    message = str(err.value)
    assert name in message and "unable to find backend library for backend 'openvino'" in message
