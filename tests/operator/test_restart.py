"""Restart safety: an operator killed (SIGKILL) mid-Job leaves no duplicate Job and loses no status."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.common import wait_for
from tests.operator.support import Kubectl, OperatorProcess, apply, example, jobs_of, om, wait_phase

pytestmark = [pytest.mark.k8s, pytest.mark.e2e]


def test_killed_mid_job_then_restarted(
    kubectl: Kubectl,
    model_namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    control_plane: Any,
) -> None:
    ns = model_namespace
    shutil.rmtree(control_plane.pvc_dir("triton-models") / "restart", ignore_errors=True)
    operator = operator_factory()
    apply(kubectl, ns, example(name="restart", model_name="restart"))
    uid = wait_for(lambda: om(kubectl, ns, "restart")["metadata"]["uid"], timeout=30, what="the resource")
    wait_for(lambda: jobs_of(kubectl, ns, uid), timeout=30, what="the Job")
    operator.stop(kill=True)  # no goodbye: nothing is cleaned up, nothing is flushed

    # The Job finishes while no operator is watching; the status still says it is under way.
    def finished() -> bool:
        (job,) = jobs_of(kubectl, ns, uid)
        return bool(job.get("status", {}).get("completionTime"))

    wait_for(finished, timeout=120, what="the Job to complete without the operator")
    assert om(kubectl, ns, "restart")["status"]["phase"] in ("Pending", "Converting")

    operator.start()  # resume: re-lists Jobs and OptimizedModels
    obj = wait_phase(kubectl, ns, "restart", "Ready", timeout=60)
    assert obj["status"]["modelVersion"] == 1
    assert len(jobs_of(kubectl, ns, uid)) == 1, "a restart must adopt the Job, never make a second"

    # A second restart with everything settled changes nothing.
    version = obj["metadata"]["resourceVersion"]
    operator.stop()
    operator.start()
    metrics = wait_for(
        lambda: operator.metrics().get("edgeopt_models_ready", 0) >= 1 and operator.metrics(),
        timeout=30,
        what="the models-ready gauge to be rebuilt from the cluster",
    )
    assert metrics["edgeopt_models_ready"] >= 1
    assert len(jobs_of(kubectl, ns, uid)) == 1
    after = om(kubectl, ns, "restart")
    assert after["status"]["phase"] == "Ready" and after["status"]["modelVersion"] == 1
    assert after["metadata"]["resourceVersion"] == version, "a settled resource is not rewritten on resume"
