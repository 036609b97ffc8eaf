"""Dynamic batching: Triton merges concurrent requests; the python backend must split answers back right."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from edgeopt.errors import ServingError
from edgeopt.triton.client import TritonClient
from edgeopt.triton.publish import publish_version
from tests.fixtures.triton import optimized_model, tree_digest
from tests.triton.tf_models import artifact_from_savedmodel, write_add_savedmodel, write_checked_sqrt_savedmodel

pytestmark = [pytest.mark.triton, pytest.mark.tf]


def test_merged_requests_get_their_own_outputs(
    triton_repository: Path, triton_server: object, triton_client: TritonClient, tmp_path: Path
) -> None:
    name = "batching"
    model = optimized_model(
        name,
        triton_repository,
        maxBatchSize=8,
        dynamicBatching={"preferredBatchSizes": [8], "maxQueueDelayMicroseconds": 300_000},
    )
    art = artifact_from_savedmodel(write_add_savedmodel(tmp_path / "sm", 5.0))
    version_dir = publish_version(art, model).version_dir
    published = tree_digest(version_dir)
    config = (triton_repository / name / "config.pbtxt").read_text()
    assert "preferred_batch_size: [ 8 ]" in config
    triton_client.load(name)

    # Six requests of batch 1 or 2 with distinct values, sent together so the scheduler merges them.
    requests = [np.full((1 + i % 2, 1), 10.0 * i, dtype=np.float32) + np.arange(1 + i % 2)[:, None] for i in range(6)]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(requests))

    def send(i: int) -> None:
        try:
            client = TritonClient(triton_client.url, timeout=60)
            barrier.wait()
            results[i] = client.infer(name, {"x": requests[i].astype(np.float32)})["y"]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for i, x in enumerate(requests):
        np.testing.assert_allclose(results[i], x + 5.0)

    stats = httpclient.InferenceServerClient(triton_client.url.split("://", 1)[1]).get_inference_statistics(name)
    (entry,) = [s for s in stats["model_stats"] if s["version"] == "1"]
    # fewer model executions than requests: Triton did merge them (and warmup ran 2 executions)
    print(f"\n[measure] batching: {entry['inference_count']} inferences in {entry['execution_count']} executions")
    assert entry["execution_count"] < len(requests)
    # the stub imported model.py and _edgeopt_batching from the version dir, using the bytecode shipped there
    assert tree_digest(version_dir) == published
    triton_client.unload(name)


def test_a_failing_request_does_not_fail_its_batch_neighbours(
    triton_repository: Path, triton_client: TritonClient, tmp_path: Path
) -> None:
    name = "batching-errors"
    model = optimized_model(
        name, triton_repository, maxBatchSize=4, dynamicBatching={"maxQueueDelayMicroseconds": 300_000}
    )
    publish_version(artifact_from_savedmodel(write_checked_sqrt_savedmodel(tmp_path / "sm")), model)
    triton_client.load(name)
    good = np.array([[4.0, 9.0]], dtype=np.float32)
    bad = np.array([[-1.0, 1.0]], dtype=np.float32)
    outcome: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def send(label: str, x: np.ndarray) -> None:
        client = TritonClient(triton_client.url, timeout=60)
        barrier.wait()
        try:
            outcome[label] = client.infer(name, {"x": x})["y"]
        except ServingError as exc:
            outcome[label] = exc

    threads = [threading.Thread(target=send, args=a) for a in (("good", good), ("bad", bad))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert isinstance(outcome["bad"], ServingError), outcome["bad"]
    assert "x must be >= 0" in str(outcome["bad"])
    np.testing.assert_allclose(outcome["good"], [[2.0, 3.0]])  # type: ignore[arg-type]
    triton_client.unload(name)
