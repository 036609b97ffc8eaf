"""Every config shape the generator can produce is accepted by Triton's own parser: the load succeeds.

The tensorflow backend is absent from this Triton (2.51 in the pytriton wheel),
so that layout is checked structurally, and its load failure must come back
as a ServingError that carries Triton's own reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeopt.errors import ServingError
from edgeopt.spec import TensorRT
from edgeopt.triton.client import TritonClient
from edgeopt.triton.publish import publish_version
from tests.fixtures.triton import optimized_model
from tests.triton.tf_models import (
    artifact_from_savedmodel,
    write_add_savedmodel,
    write_multi_io_savedmodel,
    write_string_savedmodel,
)

pytestmark = [pytest.mark.triton, pytest.mark.tf]


def load_and_check(client: TritonClient, name: str) -> dict[str, Any]:
    client.load(name)
    assert client.is_model_ready(name)
    smoke = client.smoke_infer(name)
    config = client.model_config(name)
    return {"smoke": smoke, "config": config}


def test_no_batching_config(triton_repository: Path, triton_client: TritonClient, tmp_path: Path) -> None:
    art = artifact_from_savedmodel(write_add_savedmodel(tmp_path / "sm"))
    publish_version(art, optimized_model("cfg-nobatch", triton_repository, maxBatchSize=0))
    text = (triton_repository / "cfg-nobatch" / "config.pbtxt").read_text()
    assert "max_batch_size: 0" in text and "dims: [ -1, 1 ]" in text and "model_warmup" not in text
    got = load_and_check(triton_client, "cfg-nobatch")
    assert got["config"]["max_batch_size"] == 0
    x = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)
    np.testing.assert_allclose(triton_client.infer("cfg-nobatch", {"x": x})["y"], x + 5)
    triton_client.unload("cfg-nobatch")


def test_scalar_signature_travels_as_one_element(
    triton_repository: Path, triton_client: TritonClient, tmp_path: Path
) -> None:
    art = artifact_from_savedmodel(write_add_savedmodel(tmp_path / "sm", 2.0, shape=[]))
    assert art.inputs[0].shape == []
    publish_version(art, optimized_model("cfg-scalar", triton_repository, maxBatchSize=8))
    text = (triton_repository / "cfg-scalar" / "config.pbtxt").read_text()
    assert "max_batch_size: 0" in text and "dims: [ 1 ]" in text
    load_and_check(triton_client, "cfg-scalar")
    y = triton_client.infer("cfg-scalar", {"x": np.array([4.0], dtype=np.float32)})["y"]
    np.testing.assert_allclose(y.reshape(-1), [6.0])
    triton_client.unload("cfg-scalar")


def test_multi_io_int64_variable_dim_dynamic_batching(
    triton_repository: Path, triton_client: TritonClient, tmp_path: Path
) -> None:
    art = artifact_from_savedmodel(write_multi_io_savedmodel(tmp_path / "sm"))
    model = optimized_model(
        "cfg-multi",
        triton_repository,
        maxBatchSize=4,
        versionsToKeep=1,
        dynamicBatching={"preferredBatchSizes": [2, 4], "maxQueueDelayMicroseconds": 100},
    )
    publish_version(art, model)
    text = (triton_repository / "cfg-multi" / "config.pbtxt").read_text()
    assert "TYPE_INT64" in text and "dims: [ -1 ]" in text and "model_warmup" not in text
    got = load_and_check(triton_client, "cfg-multi")
    assert {t["name"] for t in got["config"]["input"]} == {"features", "ids"}
    features = np.arange(6, dtype=np.float32).reshape(2, 3)
    ids = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.int64)
    out = triton_client.infer("cfg-multi", {"features": features, "ids": ids})
    np.testing.assert_allclose(out["scaled"], features * 2)
    np.testing.assert_array_equal(out["id_sum"], [[10], [26]])
    assert out["id_sum"].dtype == np.int64
    triton_client.unload("cfg-multi")


def test_string_tensors(triton_repository: Path, triton_client: TritonClient, tmp_path: Path) -> None:
    art = artifact_from_savedmodel(write_string_savedmodel(tmp_path / "sm"))
    assert {t.dtype for t in art.inputs} == {"BYTES"}
    publish_version(art, optimized_model("cfg-strings", triton_repository, maxBatchSize=2))
    text = (triton_repository / "cfg-strings" / "config.pbtxt").read_text()
    assert "TYPE_STRING" in text and "TYPE_INT32" in text and "model_warmup" not in text
    load_and_check(triton_client, "cfg-strings")
    out = triton_client.infer("cfg-strings", {"text": np.array([[b"edge"], [b"opt!"]], dtype=np.object_)})
    assert out["upper"].tolist() == [[b"EDGE"], [b"OPT!"]]
    np.testing.assert_array_equal(out["length"], [[4], [4]])
    triton_client.unload("cfg-strings")


def test_tensorflow_backend_layout_and_clear_load_error(
    triton_repository: Path, triton_client: TritonClient, tmp_path: Path
) -> None:
    art = artifact_from_savedmodel(write_add_savedmodel(tmp_path / "sm"))
    model = optimized_model("cfg-tfbackend", triton_repository, backend="tensorflow")
    # TF-TRT asked for but not applied offline: the config asks Triton's TF backend to do it online.
    model.spec.tensorrt = TensorRT(enabled=True, precision="FP16")
    result = publish_version(art, model)
    assert sorted(p.name for p in result.version_dir.iterdir()) == [".config.pbtxt", "model.savedmodel", "report.json"]
    assert (result.version_dir / "model.savedmodel" / "saved_model.pb").is_file()
    text = result.config_path.read_text()
    assert 'platform: "tensorflow_savedmodel"' in text and 'backend: "python"' not in text
    assert "dims: [ 1 ]" in text and "max_batch_size: 8" in text
    assert 'name: "tensorrt"' in text and 'value: "FP16"' in text
    with pytest.raises(ServingError) as err:
        triton_client.load("cfg-tfbackend")
    message = str(err.value)
    # Triton parsed and validated the whole config (warmup, TF-TRT block) and only then missed the backend.
    assert "cfg-tfbackend" in message and "unable to find backend library for backend 'tensorflow'" in message
    print(f"\n[info] tensorflow backend on this Triton: {message[:300]}")


def test_broken_model_load_error_carries_tritons_reason(
    triton_repository: Path, triton_client: TritonClient, tmp_path: Path
) -> None:
    """A SavedModel that lacks the configured signature: initialize() fails and says why."""
    art = artifact_from_savedmodel(write_add_savedmodel(tmp_path / "sm"))
    art.signature_key = "no_such_signature"
    publish_version(art, optimized_model("cfg-broken", triton_repository))
    with pytest.raises(ServingError, match="no signature 'no_such_signature'"):
        triton_client.load("cfg-broken")
    assert not triton_client.is_model_ready("cfg-broken")


@pytest.mark.gpu
def test_gpu_instance_group_loads(triton_repository: Path, triton_client: TritonClient, tmp_path: Path) -> None:
    if shutil.which("nvidia-smi") is None:
        pytest.skip(reason="no NVIDIA GPU here (nvidia-smi not found): KIND_GPU instances cannot load on a CPU machine")
    art = artifact_from_savedmodel(write_add_savedmodel(tmp_path / "sm"), gpu=True)
    publish_version(art, optimized_model("cfg-gpu", triton_repository))
    assert "kind: KIND_GPU" in (triton_repository / "cfg-gpu" / "config.pbtxt").read_text()
    load_and_check(triton_client, "cfg-gpu")
    triton_client.unload("cfg-gpu")
