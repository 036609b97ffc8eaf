"""Updates and rollbacks through the whole path, while a client never stops sending requests.

spec change → new Job → publish → the operator's switch in the real Triton,
then ``spec.target.version`` back to version 1 (a rollback: no Job), with a
client thread sending requests to Triton throughout; and a version Triton
refuses, which is LoadFailed after a bounded number of attempts. The operator
runs with the chart's RBAC.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeopt.triton.client import TritonClient
from edgeopt_dev.triton_server import TritonServer
from tests.fixtures.common import wait_for
from tests.operator.support import (
    Kubectl,
    OperatorProcess,
    apply,
    condition,
    events_of,
    example,
    free_port,
    jobs_of,
    om,
    wait_phase,
)
from tests.triton.request_loop import RequestLoop

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.triton]


@pytest.fixture(scope="module")
def triton(control_plane: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    repo = control_plane.pvc_dir("triton-models")
    for name in ("live", "refused"):
        shutil.rmtree(repo / name, ignore_errors=True)
    log = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    with TritonServer(repo, http_port=free_port(), log_path=log) as server:
        yield server


@pytest.fixture(scope="module")
def operator(
    chart_kubeconfig: Path, triton: TritonServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    env = {"EDGEOPT_TRITON_URL": triton.http_url, "EDGEOPT_SERVING_MAX_ATTEMPTS": "2"}
    op = OperatorProcess(chart_kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log", env).start()
    yield op
    op.stop()


def switch_seconds(obj: dict[str, Any]) -> float:
    found = re.search(r"switched in ([0-9.]+)s", condition(obj, "Ready")["message"])
    assert found, condition(obj, "Ready")
    return float(found.group(1))


def test_update_then_rollback_drop_no_request(
    kubectl: Kubectl, model_namespace: str, operator: OperatorProcess, triton: TritonServer
) -> None:
    ns = model_namespace
    client = TritonClient(triton.http_url, timeout=60)
    apply(kubectl, ns, example(name="live", model_name="live"))
    first = wait_phase(kubectl, ns, "live", "Ready", timeout=240)
    assert first["status"]["servingVersions"] == [1]
    uid = first["metadata"]["uid"]

    marks: dict[str, float] = {}
    with RequestLoop(triton.http_url, "live", max_seconds=400) as loop:
        loop.wait_for(50)
        # A spec change: a new generation, a new Job, version 2 published and switched to.
        marks["update"] = time.monotonic()
        apply(kubectl, ns, example(name="live", model_name="live", validation={"samples": 4}))
        wait_phase(kubectl, ns, "live", "Publishing", generation=2, timeout=240)
        marks["published"] = time.monotonic()
        updated = wait_phase(kubectl, ns, "live", "Ready", generation=2, timeout=240)
        marks["switched"] = time.monotonic()
        during_update = loop.count
        assert updated["status"]["modelVersion"] == 2 and updated["status"]["servingVersions"] == [2]
        assert client.ready_versions("live") == [2]
        # Rollback: version 1 is in the history, so it is served again with no Job.
        apply(kubectl, ns, example(name="live", model_name="live", validation={"samples": 4}, target={"version": 1}))
        marks["rollback"] = time.monotonic()
        rolled = wait_phase(kubectl, ns, "live", "Ready", generation=3, timeout=120)
        marks["rolled back"] = time.monotonic()
        loop.wait_for(loop.count + 50)
    timeline = {k: round(v - marks["update"], 2) for k, v in marks.items()}
    sent = [round(t - marks["update"], 2) for t in loop.failed_at]
    assert (
        not loop.failures
    ), f"{len(loop.failures)} of {loop.count} requests failed: {loop.failures[:3]}, sent at {sent[:3]}; {timeline}"
    assert during_update > 100, "too few requests during the update to prove anything"
    assert rolled["status"]["modelVersion"] == 1 and rolled["status"]["servingVersions"] == [1]
    assert client.ready_versions("live") == [1]
    assert len(jobs_of(kubectl, ns, uid)) == 2, "a rollback runs no conversion"
    assert condition(rolled, "Published")["reason"] == "RolledBack"
    assert [h["version"] for h in rolled["status"]["history"]] == [2, 1]
    assert "RolledBack" in [e["reason"] for e in events_of(kubectl, ns, "live")]
    assert set(loop.answers) == {6.0}  # the same model (y = 5 + x) in each version
    print(
        f"\n[measure] operator update loop: {loop.count} requests, {len(loop.failures)} failed; "
        f"Publishing -> Ready (version 2) took {marks['switched'] - marks['published']:.1f}s "
        f"(the last switch in Triton {switch_seconds(updated):.2f}s), rollback apply -> Ready "
        f"{marks['rolled back'] - marks['rollback']:.1f}s (in Triton {switch_seconds(rolled):.2f}s); "
        f"slowest request {loop.slowest[0]:.2f}s, sent {loop.slowest[1] - marks['update']:.1f}s into {timeline}"
    )


def test_a_load_triton_refuses_is_load_failed_after_bounded_attempts(
    kubectl: Kubectl, model_namespace: str, operator: OperatorProcess
) -> None:
    """The tensorflow backend is not in this Triton (pytriton ships the Python backend only): Triton refuses."""
    ns = model_namespace
    apply(kubectl, ns, example(name="refused", model_name="refused", target={"backend": "tensorflow"}))

    def failed() -> dict[str, Any] | None:
        obj = om(kubectl, ns, "refused")
        return obj if obj.get("status", {}).get("phase") == "Failed" else None

    obj = wait_for(failed, timeout=300, what="Failed after the bounded load attempts")
    ready = condition(obj, "Ready")
    assert ready["reason"] == "LoadFailed" and condition(obj, "ServingReady")["reason"] == "LoadFailed"
    assert "gave up after 2 attempts" in ready["message"]
    assert "tensorflow" in ready["message"].lower(), ready["message"]  # Triton's own words
    assert condition(obj, "Published")["status"] == "True", "the version stays published"
    reasons = [e["reason"] for e in events_of(kubectl, ns, "refused")]
    assert "LoadFailed" in reasons and "TritonUnavailable" not in reasons
