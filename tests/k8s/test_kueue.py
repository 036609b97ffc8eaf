"""The real Kueue controller (sigs.k8s.io/kueue, built from its Go module) admitting queue-managed Jobs.

One ClusterQueue per test, open to that test's namespace only: a CPU flavor
(cpu, memory) and a GPU flavor with a quota of one ``nvidia.com/gpu``. The dev
node has no GPU, so an admitted GPU Job's Pod stays Unschedulable: what these
tests assert is admission, in Kueue's own Workload conditions, and what the
operator's ``kueue`` module makes of it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from edgeopt.operator import kueue, resources, status
from edgeopt.operator.kube import Kube
from edgeopt.operator.settings import OperatorSettings
from edgeopt.spec import parse_manifest
from tests.fixtures.common import wait_for
from tests.fixtures.kueue import local_queue
from tests.k8s.jobs import job_manifest, job_pods, wait_job_finished
from tests.unit.test_operator_resources import manifest

pytestmark = pytest.mark.k8s

LOCAL_QUEUE = "conversions"
G, V = kueue.GROUP, kueue.VERSION


@pytest.fixture
def batch(k8s_client: Any) -> client.BatchV1Api:
    return client.BatchV1Api(k8s_client)


@pytest.fixture
def queue(kueue_running: Any, namespace: str, custom: client.CustomObjectsApi) -> Iterator[str]:
    """A LocalQueue in ``namespace`` on a ClusterQueue with 1 nvidia.com/gpu and a CPU flavor; its name."""
    with local_queue(custom, namespace, LOCAL_QUEUE, gpu="1") as name:
        yield name


def gpu_job(namespace: str, name: str, queue_name: str) -> dict[str, Any]:
    """The operator's own conversion Job (GPU by default), queue-managed."""
    doc = manifest(target={"repository": "pvc://triton-models", "modelName": name, "device": "GPU"})
    doc["metadata"].update(name=name, namespace=namespace)
    model = parse_manifest(doc)
    job = resources.conversion_job(
        model, OperatorSettings(), name=name, generation=1, uid=f"uid-{name}", configmap=name, queue_name=queue_name
    )
    assert kueue.suspended(job) and kueue.queue_of(job) == queue_name
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    return job


def cpu_job(name: str, queue_name: str) -> dict[str, Any]:
    job = job_manifest(
        name,
        ["python", "-c", "print('converted on CPU')"],
        container={"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
    )
    return kueue.queue_job(job, queue_name)


def create(batch: client.BatchV1Api, namespace: str, job: dict[str, Any]) -> dict[str, Any]:
    made = batch.create_namespaced_job(namespace, job)
    return client.ApiClient().sanitize_for_serialization(made)  # type: ignore[no-any-return]


def workload(kube: Kube, job: dict[str, Any]) -> dict[str, Any] | None:
    meta = job["metadata"]
    found = kube.list_workloads(meta["namespace"], kueue.workload_selector(meta["uid"]))
    return dict(kueue.workload_for(found, meta["uid"]) or {}) or None


def condition(wl: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((wl or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def admitted(kube: Kube, job: dict[str, Any]) -> dict[str, Any] | None:
    wl = workload(kube, job)
    return wl if kueue.is_admitted(wl) else None


def pending(kube: Kube, job: dict[str, Any]) -> dict[str, Any] | None:
    wl = workload(kube, job)
    return wl if condition(wl, kueue.QUOTA_RESERVED).get("status") == "False" else None


def fresh(batch: client.BatchV1Api, job: dict[str, Any]) -> dict[str, Any]:
    made = batch.read_namespaced_job(job["metadata"]["name"], job["metadata"]["namespace"])
    return client.ApiClient().sanitize_for_serialization(made)  # type: ignore[no-any-return]


def test_two_gpu_jobs_are_admitted_one_after_the_other(
    queue: str, namespace: str, batch: client.BatchV1Api, k8s_client: Any
) -> None:
    kube = Kube(k8s_client)
    first = create(batch, namespace, gpu_job(namespace, "first", queue))
    wait_for(lambda: admitted(kube, first), timeout=60, what="the first GPU Job's Workload to be Admitted")
    second = create(batch, namespace, gpu_job(namespace, "second", queue))
    wl = wait_for(lambda: pending(kube, second), timeout=60, what="Kueue to keep the second GPU Job pending")
    reserved = condition(wl, kueue.QUOTA_RESERVED)
    assert "nvidia.com/gpu" in reserved["message"] and "quota" in reserved["message"], reserved
    # Kueue unsuspended the first (its Pod waits for a GPU this node lacks); the second stays suspended.
    assert not kueue.suspended(fresh(batch, first)) and kueue.suspended(fresh(batch, second))
    # The operator's status words: the second waits in Kueue's own terms; the first is the Pod's to explain.
    said = kueue.observe(kube, fresh(batch, second))
    assert said is not None and said.reason == kueue.QUEUED_IN_KUEUE, said
    assert reserved["message"] in said.message and f"LocalQueue {queue}" in said.message
    assert kueue.observe(kube, fresh(batch, first)) is None
    # ... and what that makes of the OptimizedModel's status, through the same path as a Pod's reason.
    created = status.job_created(None, 1, "second", "second", "FP32")
    decision = kueue.decide(kube, created, 1, fresh(batch, second))
    assert decision is not None and decision.event
    ready = status.condition(decision.patch, status.READY_CONDITION) or {}
    assert (ready.get("status"), ready.get("reason")) == ("False", kueue.QUEUED_IN_KUEUE)
    assert reserved["message"] in ready.get("message", "") and decision.patch["phase"] == status.PENDING
    assert kueue.decide(kube, {**created, **decision.patch}, 1, fresh(batch, second)) is None  # nothing new
    note = kueue.admitted_note(workload(kube, first))
    assert note and "nvidia.com/gpu: gpu-" in note, note

    # The first goes away (as an outdated generation's Job does): its quota passes to the second.
    gone_at = time.time()
    batch.delete_namespaced_job("first", namespace, propagation_policy="Background")
    wl2 = wait_for(lambda: admitted(kube, second), timeout=60, what="the second GPU Job to be Admitted next")
    assert condition(wl2, kueue.ADMITTED)["lastTransitionTime"] >= time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(gone_at))
    )
    wait_for(lambda: not kueue.suspended(fresh(batch, second)), timeout=30, what="Kueue to unsuspend the second")


def test_a_cpu_job_is_not_blocked_by_a_pending_gpu_job(
    queue: str, namespace: str, batch: client.BatchV1Api, k8s_client: Any, core_api: client.CoreV1Api
) -> None:
    kube = Kube(k8s_client)
    first = create(batch, namespace, gpu_job(namespace, "holds-the-gpu", queue))
    wait_for(lambda: admitted(kube, first), timeout=60, what="the GPU Job to be Admitted")
    blocked = create(batch, namespace, gpu_job(namespace, "waits-for-the-gpu", queue))
    wait_for(lambda: pending(kube, blocked), timeout=60, what="the second GPU Job to wait for quota")
    cpu = create(batch, namespace, cpu_job("cpu-only", queue))
    wl = wait_for(lambda: admitted(kube, cpu), timeout=60, what="the CPU Job to be Admitted past the GPU queue")
    flavors = wl["status"]["admission"]["podSetAssignments"][0]["flavors"]
    assert set(flavors) == {"cpu", "memory"} and flavors["cpu"].startswith("cpu-"), flavors
    finished = wait_job_finished(batch, "cpu-only", namespace, timeout=120)
    assert finished["type"] == "Complete", finished
    assert pending(kube, blocked), "the GPU Job must still wait: the CPU Job took no GPU quota"
    (pod,) = job_pods(core_api, "cpu-only", namespace)
    assert pod.status.phase == "Succeeded"


def test_deleting_a_job_while_its_workload_is_pending_leaves_nothing(
    queue: str, namespace: str, batch: client.BatchV1Api, k8s_client: Any, core_api: client.CoreV1Api
) -> None:
    kube = Kube(k8s_client)
    first = create(batch, namespace, gpu_job(namespace, "admitted", queue))
    wait_for(lambda: admitted(kube, first), timeout=60, what="the GPU Job to be Admitted")
    doomed = create(batch, namespace, gpu_job(namespace, "doomed", queue))
    wait_for(lambda: pending(kube, doomed), timeout=60, what="the second GPU Job's Workload to be pending")
    batch.delete_namespaced_job("doomed", namespace, propagation_policy="Background")
    selector = kueue.workload_selector(doomed["metadata"]["uid"])
    wait_for(
        lambda: not kube.list_workloads(namespace, selector),
        timeout=60,
        what="the deleted Job's Workload to be garbage-collected",
    )
    wait_for(
        lambda: not batch.list_namespaced_job(namespace, label_selector=f"{resources.JOB_LABEL}=doomed").items
        and not _job_exists(batch, namespace, "doomed"),
        timeout=60,
        what="the Job to be gone",
    )
    assert not job_pods(core_api, "doomed", namespace)
    # The admitted one is untouched.
    assert kueue.is_admitted(workload(kube, first))


def test_a_missing_local_queue_is_said_in_kueues_words(
    kueue_running: Any, namespace: str, batch: client.BatchV1Api, k8s_client: Any
) -> None:
    kube = Kube(k8s_client)
    job = create(batch, namespace, gpu_job(namespace, "nowhere", "no-such-queue"))
    # First "not evaluated yet" (the Workload has no conditions), then Kueue's verdict.
    said = wait_for(
        lambda: _saying(kueue.observe(kube, fresh(batch, job)), "Inadmissible"),
        timeout=60,
        what="Kueue to call the Workload inadmissible",
    )
    assert said.reason == kueue.QUEUED_IN_KUEUE
    assert "QuotaReserved=False (Inadmissible): LocalQueue no-such-queue doesn't exist" in said.message, said.message


def _saying(found: Any, words: str) -> Any:
    return found if found is not None and words in found.message else None


def _job_exists(batch: client.BatchV1Api, namespace: str, name: str) -> bool:
    try:
        batch.read_namespaced_job(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


@pytest.fixture
def core_api(k8s_client: Any) -> client.CoreV1Api:
    return client.CoreV1Api(k8s_client)
