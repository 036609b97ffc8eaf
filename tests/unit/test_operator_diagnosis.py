"""Pod → reason on the OptimizedModel, on the status shapes kubelet and the scheduler write (no cluster).

The Pod bodies below are what ``kubectl get pod -o json`` shows for each case
on Kubernetes 1.32. The scheduler's messages (GPU, NO_CLAIM) are the real
kube-scheduler's: tests/k8s/test_scheduling.py captures them on the dev
cluster and checks they equal these constants.
"""

from __future__ import annotations

from typing import Any

import pytest

from edgeopt.artifact import Summary
from edgeopt.operator import diagnosis as D
from edgeopt.operator import status as S

GPU = (
    "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: "
    "1 No preemption victims found for incoming pod."
)
NO_CLAIM = (
    '0/1 nodes are available: persistentvolumeclaim "models" not found. preemption: 0/1 nodes are available: '
    "1 Preemption is not helpful for scheduling."
)


def pod(
    *,
    scheduled: tuple[str, str] | None = None,
    waiting: dict[str, Any] | None = None,
    terminated: dict[str, Any] | None = None,
    last: dict[str, Any] | None = None,
    reason: str | None = None,
    message: str | None = None,
    created: str = "2026-12-01T07:00:00Z",
    memory: str | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Pending", "qosClass": "BestEffort"}
    if scheduled:
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": scheduled[0],
                "message": scheduled[1],
                "lastProbeTime": None,
                "lastTransitionTime": created,
            }
        ]
    state: dict[str, Any] = {}
    if waiting is not None:
        state["waiting"] = waiting
    if terminated is not None:
        state["terminated"] = terminated
        status["phase"] = "Failed"
    if state:
        cs: dict[str, Any] = {
            "name": "convert",
            "image": "ghcr.io/edgeopt/converter:0.1.0",
            "ready": False,
            "restartCount": 0,
            "state": state,
        }
        if last:
            cs["lastState"] = {"terminated": last}
        status["containerStatuses"] = [cs]
    if reason:
        status.update(phase="Failed", reason=reason, message=message or "")
    limits = {"memory": memory} if memory else {}
    return {
        "metadata": {"name": "add-g1-abc123-x7k2p", "creationTimestamp": created},
        "spec": {"containers": [{"name": "convert", "resources": {"limits": limits}}]},
        "status": status,
    }


def test_no_gpu_node_is_unschedulable_with_the_schedulers_words() -> None:
    d = D.diagnose_pod(pod(scheduled=("Unschedulable", GPU)), "convert")
    assert d is not None and d.reason == "Unschedulable" and not d.ended
    assert "1 Insufficient nvidia.com/gpu" in d.message
    assert "spec.converter.resources" in d.message  # and what to do about it


def test_a_missing_claim_names_the_claim() -> None:
    d = D.diagnose_pod(pod(scheduled=("Unschedulable", NO_CLAIM)), "convert")
    assert d is not None and d.reason == "ClaimNotFound"
    assert d.message.startswith('persistentvolumeclaim "models" not found')
    assert "create the claim" in d.message.lower()


@pytest.mark.parametrize(
    "waiting",
    [
        {"reason": "CreateContainerConfigError", "message": 'configmap "add-g1-abc123" not found'},
        {
            "reason": "ContainerCreating",
            "message": 'MountVolume.SetUp failed for volume "manifest" : configmap "add-g1-abc123" not found',
        },
    ],
)
def test_a_missing_configmap_is_named(waiting: dict[str, Any]) -> None:
    d = D.diagnose_pod(pod(waiting=waiting), "convert")
    assert d is not None and d.reason == "ConfigNotFound"
    assert 'configmap "add-g1-abc123" not found' in d.message


@pytest.mark.parametrize(
    "reason,message",
    [
        ("ImagePullBackOff", 'Back-off pulling image "ghcr.io/edgeopt/converter:0.1.0"'),
        (
            "ErrImagePull",
            'rpc error: code = NotFound desc = failed to pull and unpack image "ghcr.io/edgeopt/converter:0.1.0": '
            "not found",
        ),
    ],
)
def test_image_pull_failures_keep_kubelets_reason(reason: str, message: str) -> None:
    d = D.diagnose_pod(pod(waiting={"reason": reason, "message": message}), "convert")
    assert d is not None and d.reason == reason
    assert "ghcr.io/edgeopt/converter:0.1.0" in d.message and "spec.converter.image" in d.message


def test_crash_loop_says_how_the_last_run_ended() -> None:
    waiting = {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container=convert"}
    d = D.diagnose_pod(pod(waiting=waiting, last={"exitCode": 1, "reason": "Error"}), "convert")
    assert d is not None and d.reason == "CrashLoopBackOff"
    assert "back-off 40s" in d.message and "Error (exit code 1)" in d.message


def test_oom_killed_names_the_limit() -> None:
    d = D.diagnose_pod(pod(terminated={"exitCode": 137, "reason": "OOMKilled"}, memory="2Gi"), "convert")
    assert d is not None and d.reason == "OOMKilled" and d.ended
    assert "memory limit 2Gi" in d.message and "limits.memory" in d.message


def test_deadline_and_eviction_are_ends_of_the_pod() -> None:
    d = D.diagnose_pod(pod(reason="DeadlineExceeded", message="Pod was active on the node longer than the deadline"))
    assert d is not None and d.reason == "DeadlineExceeded" and d.ended
    assert "activeDeadlineSeconds" in d.message
    e = D.diagnose_pod(pod(reason="Evicted", message="The node was low on resource: memory."))
    assert e is not None and e.reason == "Evicted" and "retries" in e.message


def test_normal_progress_is_not_news() -> None:
    assert D.diagnose_pod(pod()) is None  # just created
    assert D.diagnose_pod(pod(waiting={"reason": "ContainerCreating"}), "convert") is None
    running = pod()
    running["status"] = {"phase": "Running", "containerStatuses": [{"name": "convert", "state": {"running": {}}}]}
    assert D.diagnose_pod(running, "convert") is None
    ok = pod(terminated={"exitCode": 0, "reason": "Completed"})
    assert D.diagnose_pod(ok, "convert") is None
    deleting = pod(scheduled=("Unschedulable", GPU))
    deleting["metadata"]["deletionTimestamp"] = "2026-12-01T07:01:00Z"
    assert D.diagnose_pod(deleting) is None


def test_the_newest_pod_speaks_for_the_job() -> None:
    old = pod(terminated={"exitCode": 137, "reason": "OOMKilled"}, created="2026-12-01T07:00:00Z")
    new = pod(scheduled=("Unschedulable", GPU), created="2026-12-01T07:05:00Z")
    d = D.diagnose([new, old], "convert")
    assert d is not None and d.reason == "Unschedulable"
    ended = D.ended_reason([new, old], "convert")
    assert ended is not None and ended.reason == "OOMKilled"
    assert D.diagnose([]) is None


# --------------------------------------------------------------------------- what the model shows


def converting(gen: int = 1, job: str = "add-g1-abc123", phase: str = "Pending") -> dict[str, Any]:
    return {**S.job_created(None, gen, job, "add", "FP32"), "phase": phase}


def test_a_wait_goes_on_converted_and_ready_with_one_event_per_reason() -> None:
    st = converting()
    unsched = D.Diagnosis("Unschedulable", "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")
    first = S.decide_pod(st, 1, "add-g1-abc123", unsched)
    assert first is not None and first.event
    conds = {c["type"]: c for c in first.patch["conditions"]}
    assert conds["Ready"]["reason"] == conds["Converted"]["reason"] == "Unschedulable"
    assert conds["Ready"]["status"] == "False" and conds["Converted"]["status"] == "Unknown"
    assert first.patch["phase"] == "Pending"
    st = {**st, **first.patch}
    # Seen again (every Pod update): nothing to write, no second Event.
    assert S.decide_pod(st, 1, "add-g1-abc123", unsched) is None
    # The scheduler's words change but not the reason: the status follows, no Event.
    reworded = D.Diagnosis("Unschedulable", "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.")
    again = S.decide_pod(st, 1, "add-g1-abc123", reworded)
    assert again is not None and not again.event
    # A new reason: a new Event.
    pulled = S.decide_pod(st, 1, "add-g1-abc123", D.Diagnosis("ImagePullBackOff", "cannot pull"))
    assert pulled is not None and pulled.event


def test_pod_news_never_overrides_another_generation_or_a_result() -> None:
    d = D.Diagnosis("OOMKilled", "killed", ended=True)
    assert S.decide_pod(converting(), 2, "add-g2-abc123", d) is None  # a newer spec
    assert S.decide_pod(converting(), 1, "add-g1-other", d) is None  # another Job
    assert S.decide_pod(converting(phase="Ready"), 1, "add-g1-abc123", d) is None
    assert S.decide_pod(converting(), 1, "add-g1-abc123", None) is None
    during = S.decide_pod(converting(phase="Converting"), 1, "add-g1-abc123", d)
    assert during is not None and during.patch["phase"] == "Converting"
    assert "retries" in S.condition(during.patch, "Ready")["message"]  # type: ignore[index]


def test_deadline_failure_says_what_to_raise() -> None:
    job = {
        "spec": {"activeDeadlineSeconds": 600},
        "status": {
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "DeadlineExceeded",
                    "message": "Job was active longer than specified deadline",
                }
            ]
        },
    }
    reason, message = S.job_failure(job)
    assert reason == "DeadlineExceeded"
    assert "activeDeadlineSeconds=600" in message and "spec.converter.activeDeadlineSeconds" in message
    patch = S.job_failed(None, 1, Summary(False, reason, message))
    assert S.condition(patch, "Ready")["reason"] == "DeadlineExceeded"  # type: ignore[index]
