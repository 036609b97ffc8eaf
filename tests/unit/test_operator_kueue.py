"""Queue-managed conversion Jobs and Kueue's word on them, as data (the real controller: tests/k8s/test_kueue.py)."""

from __future__ import annotations

from typing import Any

import pytest

from edgeopt.operator import kueue, progress, resources
from edgeopt.operator.settings import OperatorSettings
from edgeopt.spec import parse_manifest
from tests.unit.test_operator_resources import UID, manifest

JOB_UID = "0b7e2c9a-1111-4d2e-8f00-5a6b7c8d9e0f"


def job(queue: str | None = "gpu", *, suspend: bool = True) -> dict[str, Any]:
    labels = {kueue.QUEUE_LABEL: queue} if queue else {}
    return {
        "metadata": {"name": "add-g3-abc123", "namespace": "ml", "uid": JOB_UID, "labels": labels},
        "spec": {"suspend": suspend},
    }


def workload(
    *conditions: tuple[str, str, str, str],
    admission: dict[str, Any] | None = None,
    owner: str = JOB_UID,
    created: str = "2026-12-04T21:00:00Z",
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "job-add-g3-abc123-5d1e2",
        "namespace": "ml",
        "creationTimestamp": created,
        "labels": {kueue.JOB_UID_LABEL: owner},
        "ownerReferences": [
            {"apiVersion": "batch/v1", "kind": "Job", "name": "add-g3-abc123", "uid": owner, "controller": True}
        ],
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-12-04T21:05:00Z"
    status: dict[str, Any] = {
        "conditions": [{"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conditions]
    }
    if admission:
        status["admission"] = admission
    return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload", "metadata": meta, "status": status}


PENDING_MSG = (
    "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor "
    "gpu-l4, 1 more needed"
)
ADMISSION = {
    "clusterQueue": "gpu-cq",
    "podSetAssignments": [{"name": "main", "flavors": {"nvidia.com/gpu": "gpu-l4", "cpu": "default"}}],
}


# --------------------------------------------------------------------------- the Job


def test_queue_job_suspends_and_labels_a_copy() -> None:
    original = resources.conversion_job(
        parse_manifest(manifest()),
        OperatorSettings(),
        name="add-g3-abc123",
        generation=3,
        uid=UID,
        configmap="add-g3-abc123",
    )
    queued = kueue.queue_job(original, "gpu")
    assert queued["spec"]["suspend"] is True
    assert queued["metadata"]["labels"][kueue.QUEUE_LABEL] == "gpu"
    assert "suspend" not in original["spec"] and kueue.QUEUE_LABEL not in original["metadata"]["labels"]
    # everything else is the Job the operator would have made anyway
    for key in ("template", "backoffLimit", "activeDeadlineSeconds", "podFailurePolicy"):
        assert queued["spec"][key] == original["spec"][key]


def test_conversion_job_is_queue_managed_only_with_a_queue_name() -> None:
    model = parse_manifest(manifest())
    kwargs: dict[str, Any] = {"name": "add-g3-abc123", "generation": 3, "uid": UID, "configmap": "add-g3-abc123"}
    plain = resources.conversion_job(model, OperatorSettings(), **kwargs)
    queued = resources.conversion_job(model, OperatorSettings(), queue_name="team-a.gpu", **kwargs)
    assert kueue.queue_of(plain) is None and not kueue.suspended(plain)
    assert kueue.queue_of(queued) == "team-a.gpu" and kueue.suspended(queued)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("gpu", True),
        ("team-a.gpu-l4", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("GPU", False),
        ("-gpu", False),
        ("gpu.", False),
        ("", False),
        ("gpu queue", False),
        ("gpu/a", False),
    ],
)
def test_queue_names_are_local_queue_names(name: str, ok: bool) -> None:
    error = kueue.queue_name_error(name)
    assert (error is None) is ok
    if not ok:
        assert repr(name) in (error or "")
        with pytest.raises(ValueError, match="LocalQueue name"):
            kueue.queue_job(job(), name)


# --------------------------------------------------------------------------- finding the Workload


def test_workload_for_is_the_jobs_own_live_newest_workload() -> None:
    mine_old = workload(created="2026-12-04T21:00:00Z")
    mine_new = workload(created="2026-12-04T21:01:00Z")
    other = workload(owner="another-uid", created="2026-12-04T21:02:00Z")
    gone = workload(created="2026-12-04T21:03:00Z", deleting=True)
    assert kueue.workload_for([mine_new, other, mine_old, gone], JOB_UID) is mine_new
    assert kueue.workload_for([other], JOB_UID) is None
    assert kueue.workload_selector(JOB_UID) == f"kueue.x-k8s.io/job-uid={JOB_UID}"


# --------------------------------------------------------------------------- Kueue's word


@pytest.mark.parametrize(
    ("the_job", "the_workload", "reason", "words"),
    [
        # not queue-managed, or the Pod speaks: nothing from Kueue
        (job(None), None, None, []),
        (
            job(suspend=False),
            workload(
                ("QuotaReserved", "True", "QuotaReserved", "Quota reserved in ClusterQueue " "gpu-cq"),
                ("Admitted", "True", "Admitted", "The workload is admitted"),
                admission=ADMISSION,
            ),
            None,
            [],
        ),
        (job(suspend=False), workload(("Finished", "True", "Succeeded", "Job finished successfully")), None, []),
        (job(suspend=False), None, None, []),
        # suspended and no Workload: Kueue has not seen it
        (job(), None, kueue.WAITING_FOR_KUEUE, ["suspended", "LocalQueue gpu", "batch/job"]),
        # pending: Kueue's reason and message verbatim
        (
            job(),
            workload(("QuotaReserved", "False", "Pending", PENDING_MSG)),
            kueue.QUEUED_IN_KUEUE,
            ["LocalQueue gpu", "job-add-g3-abc123-5d1e2", "QuotaReserved=False (Pending)", PENDING_MSG],
        ),
        (
            job(),
            workload(("QuotaReserved", "False", "Inadmissible", "LocalQueue gpu doesn't exist")),
            kueue.QUEUED_IN_KUEUE,
            ["QuotaReserved=False (Inadmissible): LocalQueue gpu doesn't exist"],
        ),
        (job(), workload(), kueue.QUEUED_IN_KUEUE, ["QuotaReserved: not evaluated yet"]),
        # quota reserved, admission checks still out
        (
            job(),
            workload(
                ("QuotaReserved", "True", "QuotaReserved", "Quota reserved in ClusterQueue gpu-cq"),
                ("Admitted", "False", "NoChecks", "The workload has not all checks ready"),
                admission=ADMISSION,
            ),
            kueue.QUOTA_RESERVED_REASON,
            [
                "ClusterQueue gpu-cq (cpu: default, nvidia.com/gpu: gpu-l4)",
                "Admitted=False (NoChecks): The workload has not all checks ready",
            ],
        ),
        # evicted (preempted) and requeued
        (
            job(),
            workload(
                ("QuotaReserved", "False", "Pending", PENDING_MSG),
                ("Evicted", "True", "Preempted", "Preempted to accommodate a workload (UID: x)"),
            ),
            kueue.EVICTED_BY_KUEUE,
            ["Evicted=True (Preempted): Preempted to accommodate", PENDING_MSG],
        ),
    ],
)
def test_kueue_diagnosis(
    the_job: dict[str, Any], the_workload: dict[str, Any] | None, reason: str | None, words: list[str]
) -> None:
    found = kueue.kueue_diagnosis(the_job, the_workload)
    if reason is None:
        assert found is None
        return
    assert found is not None and found.reason == reason and not found.ended
    for word in words:
        assert word in found.message
    assert reason in kueue.KUEUE_REASONS


def test_admitted_note_names_the_cluster_queue_and_flavors() -> None:
    admitted = workload(
        ("QuotaReserved", "True", "QuotaReserved", ""), ("Admitted", "True", "Admitted", ""), admission=ADMISSION
    )
    assert kueue.admitted_note(admitted) == (
        "admitted by Kueue to ClusterQueue gpu-cq (cpu: default, nvidia.com/gpu: gpu-l4)"
    )
    assert kueue.admitted_note(workload(("QuotaReserved", "False", "Pending", PENDING_MSG))) is None
    assert kueue.admitted_note(None) is None


def test_every_kueue_reason_is_on_the_troubleshooting_page() -> None:
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md").read_text()
    for reason in kueue.KUEUE_REASONS:
        assert f"`{reason}`" in page, f"docs/troubleshooting.md never names {reason}"


# --------------------------------------------------------------------------- the decision: Kueue's word as a Plan

REF = progress.Ref("ml", "add-g3-abc123", "add", UID, 3)
RESERVED_PENDING = ("QuotaReserved", "False", "Pending", PENDING_MSG)


def model_body(
    reason: str = "JobCreated",
    *,
    phase: str = "Pending",
    generation: int = 3,
    uid: str = UID,
    job_name: str = "add-g3-abc123",
) -> dict[str, Any]:
    st = {
        "phase": phase,
        "observedGeneration": generation,
        "jobName": job_name,
        "conditions": [{"type": "Ready", "status": "False", "reason": reason, "message": "..."}],
    }
    return {
        "metadata": {"name": "add", "namespace": "ml", "uid": uid, "generation": generation, "resourceVersion": "7"},
        "status": st,
    }


@pytest.mark.parametrize(
    ("body", "the_workload", "reason", "event", "warning"),
    [
        # Kueue keeps it pending: its reason and message on the status, one Normal Event
        (model_body(), workload(RESERVED_PENDING), kueue.QUEUED_IN_KUEUE, True, False),
        # still queued, with a new pending message: written, but no second Event
        (model_body(kueue.QUEUED_IN_KUEUE), workload(RESERVED_PENDING), kueue.QUEUED_IN_KUEUE, False, False),
        # quota reserved, admission checks pending: a new reason, a new Event
        (
            model_body(kueue.QUEUED_IN_KUEUE),
            workload(("QuotaReserved", "True", "QuotaReserved", "ok"), admission=ADMISSION),
            kueue.QUOTA_RESERVED_REASON,
            True,
            False,
        ),
        # evicted and requeued: a Warning
        (
            model_body(),
            workload(("Evicted", "True", "Preempted", "preempted by a higher priority"), RESERVED_PENDING),
            kueue.EVICTED_BY_KUEUE,
            True,
            True,
        ),
        # no Workload yet: WaitingForKueue, a Warning (is Kueue running? does the LocalQueue exist?)
        (model_body(), None, kueue.WAITING_FOR_KUEUE, True, True),
        # admitted: the Pod speaks from now on
        (
            model_body(),
            workload(
                ("QuotaReserved", "True", "QuotaReserved", "ok"),
                ("Admitted", "True", "Admitted", "ok"),
                admission=ADMISSION,
            ),
            None,
            False,
            False,
        ),
        # a re-created namesake, a newer generation, a resource already past Pending: not this Job's to say
        (model_body(uid="another"), workload(RESERVED_PENDING), None, False, False),
        (model_body(generation=4), workload(RESERVED_PENDING), None, False, False),
        (model_body(phase="Failed"), workload(RESERVED_PENDING), None, False, False),
        (model_body(job_name="add-g2-abc123"), workload(RESERVED_PENDING), None, False, False),
    ],
)
def test_queued_plan(
    body: dict[str, Any], the_workload: dict[str, Any] | None, reason: str | None, event: bool, warning: bool
) -> None:
    found = kueue.kueue_diagnosis(job(), the_workload)
    plan = progress.queued(body, REF, found)
    if reason is None:
        assert plan is None or plan.status is None or plan.status(body) is None
        return
    assert plan is not None and plan.status is not None and found is not None
    patch = plan.status(body)
    assert patch is not None
    ready = next(c for c in patch["conditions"] if c["type"] == "Ready")
    converted = next(c for c in patch["conditions"] if c["type"] == "Converted")
    assert (ready["status"], ready["reason"], converted["status"]) == ("False", reason, "Unknown")
    assert ready["message"] == found.message
    if reason == kueue.QUEUED_IN_KUEUE:
        assert PENDING_MSG in ready["message"]  # Kueue's own words, not ours
    assert [(e.reason, e.warning) for e in plan.events] == ([(reason, warning)] if event else [])
    # written once, the decision has nothing more to say about the same Workload
    assert progress.queued({**body, "status": {**body["status"], **patch}}, REF, found) is None
