"""The real kube-scheduler and persistentvolume-binder on the dev cluster, and the operator's reading of their words.

tests/unit/test_operator_diagnosis.py holds the scheduler's messages as
constants (its unit tests need no cluster); here they are captured from the
real kube-scheduler and must be equal, and ``diagnosis.diagnose_pod`` must
read the real Pods as it reads those.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client

from edgeopt.operator import diagnosis as D
from tests.fixtures.common import wait_for
from tests.k8s.jobs import job_manifest, job_pods, wait_job_finished
from tests.unit.test_operator_diagnosis import GPU, NO_CLAIM

pytestmark = pytest.mark.k8s


@pytest.fixture
def core(k8s_client):
    return client.CoreV1Api(k8s_client)


@pytest.fixture
def batch(k8s_client):
    return client.BatchV1Api(k8s_client)


def unschedulable(core, job: str, namespace: str) -> dict:
    """The Job's Pod, as JSON, once kube-scheduler has found it no node."""
    [pod] = job_pods(core, job, namespace)
    raw = json.loads(core.read_namespaced_pod(pod.metadata.name, namespace, _preload_content=False).data)
    [cond] = [c for c in raw["status"].get("conditions") or [] if c["type"] == "PodScheduled"]
    assert (raw["status"]["phase"], cond["status"], cond["reason"]) == ("Pending", "False", "Unschedulable")
    return raw


def scheduling_message(pod: dict) -> str:
    return next(c["message"] for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")


def test_a_gpu_and_a_missing_claim_stay_pending_in_the_schedulers_words(core, batch, namespace):
    claim = f"data-{namespace}"
    volume = {
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        "container": {"volumeMounts": [{"name": "data", "mountPath": "/mnt/late"}]},
    }
    batch.create_namespaced_job(namespace, job_manifest("waits", ["true"], **volume))
    batch.create_namespaced_job(
        namespace, job_manifest("gpu", ["true"], container={"resources": {"limits": {"nvidia.com/gpu": 1}}})
    )

    gpu = wait_for(lambda: unschedulable(core, "gpu", namespace), timeout=30, what="the GPU Pod to be unschedulable")
    assert scheduling_message(gpu) == GPU, "the diagnosis unit tests' GPU message is the scheduler's own"
    d = D.diagnose_pod(gpu, "main")
    assert (
        d is not None
        and d.reason == D.UNSCHEDULABLE
        and d.message.startswith("0/1 nodes are available: 1 " "Insufficient nvidia.com/gpu.")
    )
    waits = wait_for(lambda: unschedulable(core, "waits", namespace), timeout=30, what="the claim's Pod to wait")
    assert scheduling_message(waits) == NO_CLAIM.replace('"models"', f'"{claim}"')
    d = D.diagnose_pod(waits, "main")
    assert d is not None and d.reason == D.CLAIM_NOT_FOUND
    assert d.message.startswith(f'persistentvolumeclaim "{claim}" not found (0/1 nodes are available')
    events = core.list_namespaced_event(namespace, field_selector="reason=FailedScheduling").items
    assert events and {e.reporting_component or e.source.component for e in events} == {"default-scheduler"}

    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": claim},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    assert wait_job_finished(batch, "waits", namespace, timeout=60)["type"] == "Complete"
    [pod] = job_pods(core, "waits", namespace)
    assert pod.spec.node_name == "edgeopt-local"
    assert unschedulable(core, "gpu", namespace), "still waiting: no node here has a GPU"


def test_each_claim_gets_a_hostpath_volume_under_the_cluster_dir_bound_by_the_binder(control_plane, core, namespace):
    claim = f"store-{namespace}"
    made = core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": claim},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "3Gi"}}},
        },
    )
    bound = wait_for(
        lambda: (c := core.read_namespaced_persistent_volume_claim(claim, namespace)).status.phase == "Bound" and c,
        timeout=30,
        what="the binder to bind the claim",
    )
    pv = core.read_persistent_volume(bound.spec.volume_name)
    assert Path(pv.spec.host_path.path) == control_plane.pvc_dir(claim)
    assert (pv.spec.claim_ref.name, pv.spec.claim_ref.uid) == (claim, made.metadata.uid)
    assert pv.spec.access_modes == ["ReadWriteMany"] and pv.spec.capacity == {"storage": "3Gi"}
    assert pv.status.phase == "Bound" and pv.spec.persistent_volume_reclaim_policy == "Retain"

    core.delete_namespaced_persistent_volume_claim(claim, namespace)

    def volume_gone() -> bool:
        try:
            core.read_persistent_volume(pv.metadata.name)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(volume_gone, timeout=30, what="the Released volume to be removed")
    assert control_plane.pvc_dir(claim).is_dir(), "its data stays, as a retained volume's does"
