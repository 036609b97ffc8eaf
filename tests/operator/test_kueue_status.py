"""Kueue's word on the status, with the real operator and the real Kueue controller (issue 21 item 3).

A conversion with ``spec.converter.queueName`` gets a suspended Job; Kueue
makes its Workload and, while the ClusterQueue has no quota for what the Job
asks, keeps it pending. The status says so in Kueue's own words, read back
with kubectl as a user would; once the quota is there, Kueue admits the Job
and the conversion runs to Ready. A resource deleted while its Workload is
pending leaves no Job and no Workload behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from edgeopt.operator import kueue
from tests.fixtures.common import wait_for
from tests.fixtures.kueue import local_queue, set_cpu_quota
from tests.operator.support import (
    Kubectl,
    OperatorProcess,
    apply,
    condition,
    events_of,
    example,
    get,
    jobs_of,
    om,
    wait_phase,
)

pytestmark = [pytest.mark.k8s, pytest.mark.e2e]

QUEUE = "conversions"
#: What the converter asks for: a CPU request that a ClusterQueue with cpu quota 0 cannot admit.
ASKS = {"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}, "queueName": QUEUE}


def workloads_of(kubectl: Kubectl, ns: str, job_uid: str) -> list[dict[str, Any]]:
    found = get(kubectl, ns, "workloads.kueue.x-k8s.io", None, "-l", kueue.workload_selector(job_uid))
    return list(found["items"])


def shows_kueues_word(kubectl: Kubectl, ns: str, name: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The resource and its Workload once Ready carries the Workload's pending message, as Kueue wrote it."""
    obj = om(kubectl, ns, name)
    ready = condition(obj, "Ready")
    jobs = jobs_of(kubectl, ns, obj["metadata"]["uid"])
    if ready.get("reason") != kueue.QUEUED_IN_KUEUE or len(jobs) != 1:
        return None
    wls = workloads_of(kubectl, ns, jobs[0]["metadata"]["uid"])
    reserved = condition(wls[0], kueue.QUOTA_RESERVED) if len(wls) == 1 else {}
    if reserved.get("status") != "False" or not reserved.get("message"):
        return None
    return (obj, wls[0]) if reserved["message"] in ready["message"] else None


def test_the_status_shows_kueues_word_until_it_admits(
    kubectl: Kubectl,
    model_namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    kueue_running: Any,
    custom: client.CustomObjectsApi,
) -> None:
    ns = model_namespace
    operator_factory(EDGEOPT_KUEUE_POLL_SECONDS="1")
    with local_queue(custom, ns, QUEUE, cpu="0", gpu="0"):
        for name in ("queued", "dropped"):
            apply(kubectl, ns, example(name=name, model_name=name, converter=ASKS))
        obj, wl = wait_for(lambda: shows_kueues_word(kubectl, ns, "queued"), timeout=90, what="Kueue's word")
        st, ready = obj["status"], condition(obj, "Ready")
        assert (st["phase"], ready["status"], condition(obj, "Converted")["status"]) == ("Pending", "False", "Unknown")
        assert f"LocalQueue {QUEUE}" in ready["message"] and wl["metadata"]["name"] in ready["message"]
        assert "cpu" in condition(wl, kueue.QUOTA_RESERVED)["message"]  # Kueue's reason: no quota for cpu
        (job,) = jobs_of(kubectl, ns, obj["metadata"]["uid"])
        assert job["spec"]["suspend"] is True and job["metadata"]["labels"][kueue.QUEUE_LABEL] == QUEUE
        events = [e["reason"] for e in events_of(kubectl, ns, "queued")]
        assert events.count(kueue.QUEUED_IN_KUEUE) == 1, events  # one Event, however often it is re-read

        # Deleted while its Workload is pending: its Job and Workload go with it (owner references).
        dropped = om(kubectl, ns, "dropped")
        wait_for(lambda: shows_kueues_word(kubectl, ns, "dropped"), timeout=60, what="dropped queued in Kueue")
        (dropped_job,) = jobs_of(kubectl, ns, dropped["metadata"]["uid"])
        kubectl("delete", "optimizedmodel", "dropped", "-n", ns, "--wait=true")
        wait_for(lambda: not jobs_of(kubectl, ns, dropped["metadata"]["uid"]), timeout=60, what="its Job gone")
        wait_for(
            lambda: not workloads_of(kubectl, ns, dropped_job["metadata"]["uid"]), timeout=60, what="its Workload gone"
        )

        # Quota for the CPU: Kueue admits, unsuspends the Job, and the conversion runs to Ready.
        set_cpu_quota(custom, ns, "16")
        done = wait_phase(kubectl, ns, "queued", "Ready", timeout=300)
        assert condition(done, "Ready")["status"] == "True"
        (admitted,) = workloads_of(kubectl, ns, job["metadata"]["uid"])
        assert condition(admitted, kueue.ADMITTED)["status"] == "True"
