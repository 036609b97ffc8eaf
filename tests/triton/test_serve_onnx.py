"""The ONNX path served by the real Triton: TF → tf2onnx → (INT8) → the python backend's ONNX flavour.

The Triton here (2.51 from nvidia-pytriton) has only the Python backend, so
``backend: python`` + ``onnx.enabled`` is how an ONNX version answers here;
the answers are compared with TensorFlow running the *original* model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.spec import parse_manifest
from edgeopt.triton.client import TritonClient
from edgeopt.triton.publish import publish_version
from tests.fixtures.triton import tree_digest
from tests.triton.cases import reference, sample_input, source_manifest

pytestmark = [pytest.mark.triton, pytest.mark.tf]
BATCH_WAIT = 300_000  # µs: long enough that the scheduler merges the concurrent requests


def onnx_manifest(
    kind: str, info: dict[str, Any], repo: Path, name: str, target: dict[str, Any] | None = None, **spec: Any
) -> Any:
    base = source_manifest(kind, info, repo, name)
    doc = {
        "apiVersion": "edgeopt.io/v1alpha1",
        "kind": "OptimizedModel",
        "metadata": {"name": name},
        "spec": {
            "source": {k: v for k, v in vars(base.spec.source).items() if v not in (None, [], "serving_default")},
            "target": {
                "repository": f"file://{repo}",
                "modelName": name,
                "backend": "python",
                "device": "CPU",
                **(target or {}),
            },
            "onnx": {"enabled": True},
            **spec,
        },
    }
    doc["spec"]["source"]["inputs"] = [vars(t) for t in base.spec.source.inputs]
    return parse_manifest(doc)


@pytest.mark.parametrize(
    ("kind", "precision"), [("convbn", "FP32"), ("keras", "FP32"), ("convbn", "INT8"), ("keras", "INT8")]
)
def test_onnx_version_answers_like_tensorflow(
    kind: str,
    precision: str,
    samples: dict[str, dict[str, Any]],
    triton_repository: Path,
    triton_client: TritonClient,
    tmp_path: Path,
) -> None:
    from edgeopt.converter.pipeline import convert_model

    info = samples[kind]
    name = f"onnx-{kind}-{precision.lower()}"
    calib = tmp_path / "calibration.npz"
    input_name = info["inputs"][0]["name"]
    np.savez(calib, **{input_name: sample_input(kind, info, 32, seed=7)})
    model = onnx_manifest(
        kind,
        info,
        triton_repository,
        name,
        tensorrt={"enabled": False, "precision": precision, "calibration": {"uri": f"file://{calib}", "samples": 32}},
        validation={"rtol": 1e-4, "atol": 1e-5, "int8Rtol": 0.2, "int8Atol": 0.1, "minTop1Agreement": 0.5},
    )
    artifact = convert_model(model, tmp_path / "work")
    assert artifact.model_format == "onnx"
    result = publish_version(artifact, model)
    version_dir = result.version_dir
    assert sorted(p.name for p in version_dir.iterdir() if not p.name.startswith(".")) == [
        "__pycache__",
        "_edgeopt_batching.py",
        "model.onnx",
        "model.py",
        "report.json",
    ]
    assert "import tensorflow" not in (version_dir / "model.py").read_text()

    triton_client.load(name)
    assert triton_client.is_model_ready(name, result.version)
    x = sample_input(kind, info, 3, seed=1)
    want = reference(kind, info, x)
    (in_name,) = [t.name for t in artifact.inputs]
    got = triton_client.infer(name, {in_name: x})
    assert set(got) == set(want)
    for out, ref in want.items():
        assert got[out].shape == ref.shape
        if precision == "FP32":
            np.testing.assert_allclose(got[out], ref, rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_allclose(got[out], ref, rtol=0.2, atol=0.1)
    layout = artifact.report["onnx"].get("int8", {}).get("layout", {}).get("name")
    assert layout == ("U8S8-QOperator" if precision == "INT8" else None)
    triton_client.unload(name)


def test_failed_onnx_conversion_publishes_nothing(
    samples: dict[str, dict[str, Any]], triton_repository: Path, tmp_path: Path
) -> None:
    """INT8 calibration data that does not fit the model: a clear InputError, the repository untouched."""
    from edgeopt.converter.pipeline import convert_model
    from edgeopt.errors import InputError

    info = samples["convbn"]
    bad = tmp_path / "bad.npz"
    np.savez(bad, input=np.zeros((4, 8, 8, 3), np.float32))
    model = onnx_manifest(
        "convbn",
        info,
        triton_repository,
        "onnx-bad-calibration",
        tensorrt={"enabled": False, "precision": "INT8", "calibration": {"uri": f"file://{bad}"}},
    )
    before = tree_digest(triton_repository)
    with pytest.raises(InputError, match=r"has shape \[4, 8, 8, 3\] but input input has shape \[-1, 16, 16, 3\]"):
        convert_model(model, tmp_path / "work")
    assert tree_digest(triton_repository) == before
    assert not any((tmp_path / "work").iterdir())


def test_onnx_flavour_merges_concurrent_requests(
    samples: dict[str, dict[str, Any]], triton_repository: Path, triton_client: TritonClient, tmp_path: Path
) -> None:
    """Dynamic batching through the ONNX flavour: one ORT run for merged requests, each answer split back."""
    import threading

    import tritonclient.http as httpclient

    from edgeopt.converter.pipeline import convert_model

    info, name = samples["convbn"], "onnx-batching"
    model = onnx_manifest(
        "convbn",
        info,
        triton_repository,
        name,
        target={
            "maxBatchSize": 8,
            "dynamicBatching": {"preferredBatchSizes": [8], "maxQueueDelayMicroseconds": BATCH_WAIT},
        },
        tensorrt={"enabled": False, "precision": "FP32"},
    )
    version_dir = publish_version(convert_model(model, tmp_path / "work"), model).version_dir
    published = tree_digest(version_dir)
    triton_client.load(name)
    feeds = [sample_input("convbn", info, 1 + i % 2, seed=20 + i) for i in range(6)]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(feeds))

    def send(i: int) -> None:
        try:
            client = TritonClient(triton_client.url, timeout=60)
            barrier.wait()
            results[i] = client.infer(name, {"input": feeds[i]})["output"]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(feeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for i, x in enumerate(feeds):
        np.testing.assert_allclose(results[i], reference("convbn", info, x)["output"], rtol=1e-4, atol=1e-5)
    stats = httpclient.InferenceServerClient(triton_client.url.split("://", 1)[1]).get_inference_statistics(name)
    (entry,) = [s for s in stats["model_stats"] if s["version"] == "1"]
    assert entry["execution_count"] < len(feeds)
    # the stub imported model.py and _edgeopt_batching from the version dir, using the bytecode shipped there
    assert tree_digest(version_dir) == published
    triton_client.unload(name)
