"""Version switches under load with the real Triton: a client that never pauses sees no failed request.

The operator's own switch (``serving.switch_to``) and the real publisher run
against the session's tritonserver while a client thread sends requests
back to back, without a version (what applications do). Each test prints the
switch time and the request count (``[measure]``).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from edgeopt.operator import serving
from edgeopt.triton.client import AsyncTritonClient, TritonClient, TritonRefused
from edgeopt.triton.publish import publish_version
from tests.fixtures.triton import file_artifact, optimized_model
from tests.triton.request_loop import RequestLoop
from tests.triton.tf_models import artifact_from_savedmodel, write_add_savedmodel, write_multi_io_savedmodel

pytestmark = [pytest.mark.triton, pytest.mark.tf]


def switch(url: str, name: str, version: int, *, from_repository: bool = True) -> serving.Switch:
    triton = AsyncTritonClient(url, timeout=60, load_timeout=120)
    return asyncio.run(serving.switch_to(triton, name, version, timeout=60, from_repository=from_repository))


def test_update_and_rollback_drop_no_request(
    triton_repository: Path, triton_client: TritonClient, triton_server: object, tmp_path: Path
) -> None:
    name = "zero-downtime"
    url = triton_client.url
    model = optimized_model(name, triton_repository, versionsToKeep=3)
    publish_version(artifact_from_savedmodel(write_add_savedmodel(tmp_path / "a5", 5.0)), model)
    first = switch(url, name, 1)
    assert triton_client.ready_versions(name) == [1] and first.dropped == ()

    with RequestLoop(url, name) as loop:
        loop.wait_for(50)
        assert not loop.failures, loop.failures[:3]
        # Update: the converter publishes version 2 (the operator passes the served version) ...
        published = publish_version(
            artifact_from_savedmodel(write_add_savedmodel(tmp_path / "a7", 7.0)), model, serving_versions=[1]
        )
        assert published.version == 2
        before = loop.count
        update = switch(url, name, 2)
        during = loop.count - before
        loop.wait_for(loop.count + 50)
        # ... and a rollback to version 1, kept on disk: no conversion, no file touched.
        rollback = switch(url, name, 1, from_repository=False)
        loop.wait_for(loop.count + 50)
    assert not loop.failures, f"{len(loop.failures)} of {loop.count} requests failed: {loop.failures[:3]}"
    assert during > 0, "the client sent nothing while the switch ran; the test proved nothing"
    assert update.dropped == (1,) and rollback.dropped == (2,)
    assert triton_client.ready_versions(name) == [1]
    # Old answers, then new ones, then old ones again: the switch happened while requests flowed.
    assert loop.answers[0] == 6.0 and 8.0 in loop.answers and loop.answers[-1] == 6.0
    print(
        f"\n[measure] zero-downtime update: {loop.count} requests, {len(loop.failures)} failed; "
        f"switch 1 -> 2 took {update.seconds:.2f}s ({during} requests during it), "
        f"rollback 2 -> 1 took {rollback.seconds:.2f}s; slowest request {loop.slowest[0]:.2f}s"
    )
    triton_client.unload(name)


def test_incompatible_or_broken_new_version_never_breaks_the_served_one(
    triton_repository: Path, triton_client: TritonClient, triton_server: object, tmp_path: Path
) -> None:
    name = "incompatible"
    url = triton_client.url
    model = optimized_model(name, triton_repository, versionsToKeep=3)
    publish_version(artifact_from_savedmodel(write_add_savedmodel(tmp_path / "a5", 5.0)), model)
    switch(url, name, 1)

    with RequestLoop(url, name) as loop:
        loop.wait_for(50)
        # A broken version 2 (not a SavedModel Triton can load): Triton refuses, version 1 serves on.
        publish_version(file_artifact(tmp_path / "garbage", payload=b"not a SavedModel"), model, serving_versions=[1])
        with pytest.raises(TritonRefused):
            switch(url, name, 2)
        loop.wait_for(loop.count + 50)
        assert not loop.failures, loop.failures[:3]
        assert triton_client.ready_versions(name) == [1]
        # Version 3 with other inputs: its config lists only version 3, so it never applies to version 1,
        # which answers the old client until Triton has the new model ready.
        other = publish_version(
            artifact_from_savedmodel(write_multi_io_savedmodel(tmp_path / "multi")), model, serving_versions=[1]
        )
        assert "versions: [ 3 ]" in other.config_path.read_text()
        started = time.monotonic()
        update = switch(url, name, 3)
        loop.wait_for(loop.count + 20)
    # While Triton loaded version 3, version 1 kept answering the old client; only once the model was
    # swapped did the old client's requests stop matching (expected: its interface changed).
    during = [t for t, a in zip(loop.answered_at, loop.answers, strict=True) if t >= started and a == 6.0]
    assert len(during) > 0, "no request was answered while version 3 loaded; the test proved nothing"
    assert loop.failed_at, "after the swap the old interface must be refused, else version 1 still serves"
    assert min(loop.failed_at) >= max(during), "a request failed while version 1 should still have served it"
    assert all("expected 2 inputs" in f for f in loop.failures), loop.failures[:3]
    assert triton_client.ready_versions(name) == [3]
    print(
        f"\n[measure] incompatible update: version 1 answered {len(during)} requests during the "
        f"{update.seconds:.2f}s switch, none failed before the swap; a broken version 2 was refused "
        "(LoadFailed) with version 1 still serving"
    )
    triton_client.unload(name)


def write_log_savedmodel(path: Path) -> Path:
    """y = log(x): same interface as the add model, but -inf for the smoke test's zeros."""
    from tests.triton.tf_models import tf

    t = tf()

    class Log(t.Module):
        @t.function(input_signature=[t.TensorSpec([None, 1], t.float32, name="x")])
        def serve(self, x: object) -> dict[str, object]:
            return {"y": t.math.log(x)}

    module = Log()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def test_a_version_failing_its_smoke_test_is_taken_back(
    triton_repository: Path, triton_client: TritonClient, triton_server: object, tmp_path: Path
) -> None:
    name = "smoke-fails"
    url = triton_client.url
    model = optimized_model(name, triton_repository, versionsToKeep=3)
    publish_version(artifact_from_savedmodel(write_add_savedmodel(tmp_path / "a5", 5.0)), model)
    switch(url, name, 1)
    with RequestLoop(url, name) as loop:
        loop.wait_for(50)
        publish_version(artifact_from_savedmodel(write_log_savedmodel(tmp_path / "log")), model, serving_versions=[1])
        with pytest.raises(serving.SmokeTestFailed, match="NaN or Inf"):
            switch(url, name, 2)
        restored = time.monotonic()
        loop.wait_for(loop.count + 50)
    assert not loop.failures, loop.failures[:3]
    assert triton_client.ready_versions(name) == [1], "what served before is served again"
    later = [a for t, a in zip(loop.answered_at, loop.answers, strict=True) if t >= restored]
    assert later and set(later) == {6.0}, "requests sent after the switch gave up are answered by version 1"
    # Triton routes requests without a version to the newest ready one, so while the smoke test ran the
    # bad version may have answered (log(1) = 0): measured, not hidden.
    bad = loop.answers.count(0.0)
    print(f"\n[measure] smoke test failed: version 2 answered {bad} requests before it was taken back")
    triton_client.unload(name)
