"""Every branch of the conversion's decisions, table by table, with no API server (decide.py, progress.py).

Each case builds the observed snapshot (the resource's body, its Jobs and Pods) as the API returns
it, asks the decision, and checks the Plan: what it deletes and creates, the status it would
write onto that very body, its Events and its retry.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeopt.artifact import Summary
from edgeopt.errors import SpecError
from edgeopt.operator import decide, progress, queueing, tenancy
from edgeopt.operator import status as S
from edgeopt.operator.diagnosis import Diagnosis
from edgeopt.operator.plan import Plan
from edgeopt.operator.runtime import model_from_body
from edgeopt.operator.settings import OperatorSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "add-checkpoint-cpu.yaml"
SETTINGS = OperatorSettings(converter_resources={})
UID = "0b7e-uid"


def resource(gen: int = 1, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    doc = yaml.safe_load(EXAMPLE.read_text())
    for key, value in spec.items():
        doc["spec"].setdefault(key, {}).update(value)
    meta = {
        "name": "add",
        "namespace": "ns",
        "uid": UID,
        "generation": gen,
        "creationTimestamp": "t0",
        "resourceVersion": "7",
    }
    return {
        "apiVersion": "edgeopt.io/v1alpha1",
        "kind": "OptimizedModel",
        "metadata": meta,
        "spec": doc["spec"],
        "status": status or {},
    }


def job(name: str, gen: int, state: str = "active", uid: str = UID, **extra: Any) -> dict[str, Any]:
    st = {
        "active": {"active": 1, "ready": 0},
        "running": {"active": 1, "ready": 1},
        "done": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
        "failed": {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]},
    }[state]
    labels = {"edgeopt.io/uid": uid, "edgeopt.io/generation": str(gen), "edgeopt.io/model": "add"}
    meta = {"name": name, "namespace": "ns", "labels": labels, "annotations": {"edgeopt.io/resource-name": "add"}}
    return {"metadata": meta, "status": {**st, **extra}}


def job_of(body: dict[str, Any]) -> str:
    return decide.job_name(body)


def patch_of(plan: Plan | None, body: dict[str, Any]) -> dict[str, Any] | None:
    assert plan is not None and plan.status is not None
    return plan.status(body)


def reasons(plan: Plan) -> list[str]:
    return [e.reason for e in plan.events]


def ready(patch: dict[str, Any] | None) -> dict[str, Any]:
    return dict(S.condition(patch, S.READY_CONDITION) or {})


# --------------------------------------------------------------------------- create / update / resume


def test_an_invalid_spec_fails_once() -> None:
    body = resource()
    plan = decide.spec_error(body, SpecError("spec.source.format: is required"))
    patch = patch_of(plan, body)
    assert patch and patch["phase"] == S.FAILED and ready(patch)["reason"] == "InvalidSpec"
    assert reasons(plan) == ["InvalidSpec"] and plan.events[0].warning
    assert patch_of(plan, {**body, "status": patch}) is None, "the same failure twice is no write (and no Event)"


GEN1 = resource()
TRACKED = resource(status=S.job_created({}, 1, job_of(GEN1), "add", "FP32"))
GEN2 = resource(gen=2, status=S.job_created({}, 1, job_of(GEN1), "add", "FP32"))
HISTORY = {"history": [{"version": 1, "generation": 1, "summary": {}}], "modelVersion": 1}
ROLLBACK = resource(gen=3, status={**S.job_created({}, 2, "old", "add", "FP32"), **HISTORY}, target={"version": 1})
ROLLED = resource(gen=3, status=S.rolling_back(HISTORY, 3, 1, serving=False), target={"version": 1})


@pytest.mark.parametrize(
    "body,expected",
    [
        (GEN1, False),  # generation 1, no Job recorded: nothing older can run, and a 409 adopts this one's
        (TRACKED, False),  # made and recorded already
        (GEN2, True),  # the older generation's Job may still run
        (ROLLBACK, True),  # unfinished Jobs are stopped
        (ROLLED, False),
    ],
)
def test_needs_jobs(body: dict[str, Any], expected: bool) -> None:
    assert decide.needs_jobs(body, model_from_body(body)) is expected


@pytest.mark.parametrize(
    "body,jobs,next_,deletes,events",
    [
        (GEN1, [], decide.ADMIT, (), []),
        (TRACKED, [], decide.DONE, (), []),
        (ROLLED, [], decide.DONE, (), []),
        (GEN2, [job("add-g1", 1)], decide.ADMIT, ("add-g1",), ["Superseded"]),
        (GEN2, [job("add-g1", 1, "done")], decide.ADMIT, (), []),  # finished: kept for its logs
        (GEN2, [job("add-g1", 1, "done"), job(job_of(GEN2), 2)], decide.ADOPT, (), []),  # made before a restart
        (ROLLBACK, [job("add-g2", 2)], decide.DONE, ("add-g2",), [S.ROLLED_BACK]),
    ],
)
def test_generation_step(
    body: dict[str, Any], jobs: list[dict[str, Any]], next_: str, deletes: tuple[str, ...], events: list[str]
) -> None:
    step = decide.generation_step(body, model_from_body(body), jobs, serving=False)
    assert (step.next, step.plan.delete_jobs, reasons(step.plan)) == (next_, deletes, events)
    assert (step.job is not None) == (next_ == decide.ADOPT)


@pytest.mark.parametrize(
    "serving,phase,ready_reason", [(False, S.READY, S.ROLLED_BACK), (True, S.PUBLISHING, "RollingBack")]
)
def test_rollback_serves_the_kept_version(serving: bool, phase: str, ready_reason: str) -> None:
    step = decide.generation_step(ROLLBACK, model_from_body(ROLLBACK), [], serving=serving)
    patch = patch_of(step.plan, ROLLBACK)
    assert patch and patch["phase"] == phase and patch["modelVersion"] == 1 and patch["jobName"] is None
    assert ready(patch)["reason"] == ready_reason
    # Decided again on a fresh body that moved on (a newer spec, or already rolled back): nothing to write.
    assert patch_of(step.plan, {**ROLLBACK, "metadata": {**ROLLBACK["metadata"], "generation": 4}}) is None
    assert patch_of(step.plan, ROLLED) is None


def test_adopt_records_the_job_once() -> None:
    plan = decide.adopt(GEN1, model_from_body(GEN1), job_of(GEN1))
    patch = patch_of(plan, GEN1)
    assert patch and patch["jobName"] == job_of(GEN1) and patch["phase"] == S.PENDING
    assert patch_of(plan, TRACKED) is None


def test_refusals() -> None:
    body = resource(converter={"image": "evil.example/miner:latest"})
    plan = decide.refusal(body, model_from_body(body), SETTINGS)
    patch = patch_of(plan, body)
    assert plan and reasons(plan) == ["NotAllowed"] and patch and patch["phase"] == S.FAILED
    assert "ALLOWED_CONVERTER_IMAGES" in ready(patch)["message"]
    assert decide.refusal(GEN1, model_from_body(GEN1), SETTINGS) is None

    owner = resource(
        status={"modelName": "add", **S.job_succeeded({}, 1, Summary(True, "Published", "ok", "add", 1), serving=False)}
    )
    owner["metadata"] = {**owner["metadata"], "uid": "someone-else", "name": "first", "namespace": "ns"}
    publishers = {"add": [tenancy.publisher_entry(owner)["add"]]}
    taken = decide.name_taken(GEN1, model_from_body(GEN1), publishers, SETTINGS)
    assert taken and reasons(taken) == ["OwnedByAnotherModel"] and "ns/first" in taken.events[0].message
    assert decide.name_taken(GEN1, model_from_body(GEN1), {}, SETTINGS) is None

    rejected = decide.rejected(GEN1, "422 spec.template.spec.tolerations[0].operator: Unsupported value")
    assert reasons(rejected) == ["JobRejected"] and ready(patch_of(rejected, GEN1))["reason"] == "JobRejected"


def test_queue_managed_conversions_take_no_slot_of_ours() -> None:
    kueue = resource(converter={"queueName": "gpus"})
    assert decide.queue_name(model_from_body(kueue), SETTINGS) == "gpus"
    assert decide.slot_of(model_from_body(kueue), SETTINGS) is None
    assert decide.slot_of(model_from_body(GEN1), OperatorSettings(converter_queue_name="cluster-gpus")) is None
    assert decide.slot_of(model_from_body(GEN1), SETTINGS) == queueing.NO_GPU
    gpu = resource(
        converter={
            "resources": {"limits": {"nvidia.com/gpu": 1}},
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"},
        }
    )
    assert decide.slot_of(model_from_body(gpu), SETTINGS) == queueing.SlotClass("nvidia.com/gpu", "NVIDIA-L4")


@pytest.mark.parametrize("already_waiting", [False, True])
def test_waiting_says_its_place_and_retries(already_waiting: bool) -> None:
    slot = queueing.SlotClass("nvidia.com/gpu", "NVIDIA-L4")
    admission = queueing.Admission(False, slot, position=2, running=1, limit=1, stalled=0)
    body = resource(status=S.waiting_for_capacity({}, 1, 1, 1) if already_waiting else {})
    plan = decide.waiting(body, admission, 2.5)
    patch = patch_of(plan, body)
    assert ready(patch)["message"].startswith("2nd in queue for nvidia.com/gpu, product NVIDIA-L4: 1 of 1")
    assert reasons(plan) == ([] if already_waiting else [S.WAITING_FOR_CAPACITY]), "one Event when it starts waiting"
    assert plan.retry and plan.retry.delay == 2.5 and "2nd in queue" in plan.retry.message
    assert patch_of(plan, {**body, "status": patch}) is None, "the same place twice is no write"


def test_create_job_makes_configmap_then_job_owned_by_the_resource() -> None:
    body = resource(status={"servingVersions": [3], "history": [{"version": 3}, {"version": 2}]})
    plan = decide.create_job(body, model_from_body(body), job_of(body), SETTINGS)
    kinds = [o["kind"] for o in plan.create]
    assert kinds == ["ConfigMap", "Job"]
    for obj in plan.create:
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref["uid"] == UID and ref["kind"] == "OptimizedModel"
    env = {e["name"]: e.get("value") for e in plan.create[1]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "3" in [v for k, v in env.items() if "SERVING" in k], env
    assert [e.reason for e in plan.on_created] == ["JobCreated"] and not plan.events
    patch = patch_of(plan, body)
    assert patch and patch["jobName"] == job_of(body) and ready(patch)["reason"] == "JobCreated"


# --------------------------------------------------------------------------- Job and Pod progress


REF = progress.Ref("ns", job_of(GEN1), "add", UID, 1)
CONVERTING = resource(status={**TRACKED["status"], **S.job_running(TRACKED["status"], 1, job_of(GEN1))})
OTHER = copy.deepcopy(GEN1)
OTHER["metadata"]["uid"] = "a-namesake"


@pytest.mark.parametrize(
    "body,state,plans",
    [
        (TRACKED, S.JOB_RUNNING, True),
        (GEN1, S.JOB_RUNNING, True),  # the Job runs before its creation was recorded: still news
        (CONVERTING, S.JOB_RUNNING, False),  # said already
        (None, S.JOB_RUNNING, False),  # the resource is gone
        (OTHER, S.JOB_RUNNING, False),  # a re-created namesake
        (GEN2, S.JOB_RUNNING, False),  # a superseded generation
        (resource(status=S.job_created({}, 1, "another-job", "add", "FP32")), S.JOB_RUNNING, False),
        (TRACKED, S.JOB_SUCCEEDED, False),  # an end is finished(), not started()
    ],
)
def test_started(body: dict[str, Any] | None, state: str, plans: bool) -> None:
    plan = progress.started(body, REF, state)
    assert (plan is not None) == plans
    if plan and body:
        patch = patch_of(plan, body)
        assert patch and patch["phase"] == S.CONVERTING and reasons(plan) == ["Converting"]
        assert patch_of(plan, CONVERTING) is None, "another writer moved it on: nothing to write"


SUCCEEDED = S.job_succeeded(TRACKED["status"], 1, Summary(True, "Published", "ok", "add", 1), serving=False)
PUBLISHED = resource(status={**TRACKED["status"], **SUCCEEDED})


@pytest.mark.parametrize(
    "body,state,news",
    [
        (CONVERTING, S.JOB_SUCCEEDED, True),
        (CONVERTING, S.JOB_FAILED, True),
        (CONVERTING, S.JOB_RUNNING, False),
        (PUBLISHED, S.JOB_SUCCEEDED, False),  # recorded already (another worker, or before a restart)
        (GEN2, S.JOB_SUCCEEDED, False),
        (OTHER, S.JOB_SUCCEEDED, False),
        (None, S.JOB_SUCCEEDED, False),
    ],
)
def test_finished_news(body: dict[str, Any] | None, state: str, news: bool) -> None:
    assert progress.finished_news(body, REF, state) is news


def pod_ended(message: str | None = None, reason: str | None = None, code: int = 1) -> dict[str, Any]:
    term: dict[str, Any] = {"exitCode": code, "finishedAt": "t9", **({"message": message} if message else {})}
    if reason:
        term["reason"] = reason
    cs = {"name": "convert", "state": {"terminated": term}}
    return {
        "metadata": {"creationTimestamp": "t1"},
        "spec": {"containers": [{"name": "convert"}]},
        "status": {"containerStatuses": [cs]},
    }


OK = Summary(True, "Published", "converted", "add", 4, {"opsBefore": 9, "opsAfter": 3}).to_json()
BAD_INPUT = Summary(False, "InvalidInput", "output 'z' is not in the graph").to_json()
DEADLINE = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "Job was active longer"}


@pytest.mark.parametrize(
    "state,job_extra,pods,ok,reason",
    [
        (S.JOB_SUCCEEDED, {}, [pod_ended(OK, code=0)], True, "Published"),
        (S.JOB_FAILED, {}, [pod_ended(BAD_INPUT, code=3)], False, "InvalidInput"),
        (S.JOB_FAILED, {"conditions": [DEADLINE]}, [pod_ended("log tail")], False, "DeadlineExceeded"),
        (S.JOB_FAILED, {}, [pod_ended("Killed", reason="OOMKilled", code=137)], False, "OOMKilled"),
        (S.JOB_FAILED, {}, [pod_ended("Traceback ... Segfault")], False, "ConverterCrashed"),
        (S.JOB_FAILED, {}, [], False, "BackoffLimitExceeded"),  # no Pod left to ask: the Job's own word
        (S.JOB_SUCCEEDED, {}, [pod_ended("not json", code=0)], False, "InvalidJobOutput"),
    ],
)
def test_job_summary(state: str, job_extra: dict[str, Any], pods: list[dict[str, Any]], ok: bool, reason: str) -> None:
    j = job(REF.job, 1, "done" if state == S.JOB_SUCCEEDED else "failed")
    j["status"].update(job_extra)
    summary = progress.job_summary(j, state, pods)
    assert (summary.ok, summary.reason) == (ok, reason), summary


@pytest.mark.parametrize(
    "triton,phase,events",
    [(None, S.READY, ["Published", "Ready"]), ("http://triton:8000", S.PUBLISHING, ["Published"])],
)
def test_finished_success(triton: str | None, phase: str, events: list[str]) -> None:
    settings = OperatorSettings(converter_resources={}, triton_url=triton)
    j = job(REF.job, 1, "done", startTime="2026-01-01T00:00:00Z", completionTime="2026-01-01T00:00:42Z")
    plan = progress.finished(CONVERTING, REF, j, S.JOB_SUCCEEDED, [pod_ended(OK, code=0)], settings)
    patch = patch_of(plan, CONVERTING)
    assert patch and patch["phase"] == phase and patch["modelVersion"] == 4 and reasons(plan) == events
    assert "in 42s" in plan.events[0].message and plan.metric == ("succeeded", "Published", 42.0)
    assert patch_of(plan, PUBLISHED) is None, "recorded already: no second write, no second Event"


def test_finished_failure() -> None:
    j = job(REF.job, 1, "failed")
    plan = progress.finished(CONVERTING, REF, j, S.JOB_FAILED, [pod_ended(BAD_INPUT, code=3)], SETTINGS)
    patch = patch_of(plan, CONVERTING)
    assert patch and patch["phase"] == S.FAILED and ready(patch)["reason"] == "InvalidInput"
    assert reasons(plan) == ["InvalidInput"] and plan.events[0].warning
    assert plan.metric == ("failed", "InvalidInput", None)


DELETING = copy.deepcopy(CONVERTING)
DELETING["metadata"]["deletionTimestamp"] = "t5"


@pytest.mark.parametrize(
    "body,state,plans",
    [
        (CONVERTING, "active", True),
        (TRACKED, "active", True),
        (CONVERTING, "done", False),  # finished and TTL-deleted: not news
        (PUBLISHED, "active", False),  # terminal already
        (GEN2, "active", False),  # superseded
        (DELETING, "active", False),  # the resource goes too
        (OTHER, "active", False),
        (None, "active", False),
    ],
)
def test_lost(body: dict[str, Any] | None, state: str, plans: bool) -> None:
    plan = progress.lost(body, REF, job(REF.job, 1, state))
    assert (plan is not None) == plans
    if plan and body:
        assert ready(patch_of(plan, body))["reason"] == "JobDeleted" and reasons(plan) == ["JobDeleted"]


def test_pod_diagnosed() -> None:
    found = Diagnosis("Unschedulable", "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")
    plan = progress.pod_diagnosed(TRACKED, REF, found)
    assert plan and reasons(plan) == ["Unschedulable"]
    patch = patch_of(plan, TRACKED)
    assert patch and ready(patch)["reason"] == "Unschedulable" and patch["phase"] == S.PENDING
    seen = resource(status={**TRACKED["status"], **patch})
    again = progress.pod_diagnosed(seen, REF, found)
    assert again is None, "the same reason twice: no write, no Event"
    moved = progress.pod_diagnosed(seen, REF, Diagnosis("Unschedulable", "0/2 nodes are available"))
    assert moved and reasons(moved) == [], "a new message, same reason: written, no second Event"
    for body in (None, OTHER, GEN2, DELETING, PUBLISHED):
        assert progress.pod_diagnosed(body, REF, found) is None
    assert progress.pod_diagnosed(TRACKED, REF, None) is None


def test_a_pod_diagnosed_before_the_status_names_its_job_is_not_taken_as_seen() -> None:
    """The Job is created, then the status names it: a Pod Unschedulable in between is looked at again."""
    found = Diagnosis("Unschedulable", "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")
    assert progress.pod_diagnosed(GEN1, REF, found) is None, "the status does not name the Job yet"
    assert progress.awaits_job_name(GEN1, REF), "so the Pod must be looked at again"
    assert progress.pod_diagnosed(TRACKED, REF, found) is not None, "once it does, the reason goes on"
    for body in (TRACKED, CONVERTING, None, OTHER, GEN2, DELETING, PUBLISHED):
        assert not progress.awaits_job_name(body, REF), "named already, or nothing will ever name it"


def test_ref_of_jobs_and_pods() -> None:
    j = job("add-g1-abc", 1)
    assert progress.ref_of(j) == progress.Ref("ns", "add-g1-abc", "add", UID, 1)
    owner = {"kind": "OptimizedModel", "apiVersion": "edgeopt.io/v1alpha1", "name": "a-long-name"}
    labels = {**j["metadata"]["labels"], "edgeopt.io/job": "add-g1-abc"}
    pod = {"metadata": {"name": "p", "namespace": "ns", "labels": labels, "ownerReferences": [owner]}}
    assert progress.ref_of(pod, pod=True) == progress.Ref("ns", "add-g1-abc", "a-long-name", UID, 1)
    cleanup = job("add-cleanup", 0)
    cleanup["metadata"]["labels"]["edgeopt.io/purpose"] = "cleanup"
    assert progress.ref_of(cleanup) is None
    assert progress.ref_of({"metadata": {"name": "x", "namespace": "ns"}}) is None


@pytest.mark.parametrize(
    "target,triton,status_,needed,creates,events",
    [
        ({"deletionPolicy": "Delete"}, None, {}, True, 1, []),
        ({"deletionPolicy": "Retain"}, None, {}, False, 0, []),
        ({"deletionPolicy": "Retain"}, "http://triton:8000", {"modelVersion": 1}, True, 0, []),
        ({"deletionPolicy": "Retain"}, "http://triton:8000", {}, False, 0, []),
    ],
)
def test_cleanup(
    target: dict[str, Any], triton: str | None, status_: dict[str, Any], needed: bool, creates: int, events: list[str]
) -> None:
    settings = OperatorSettings(converter_resources={}, triton_url=triton)
    body = resource(status=status_, target=target)
    assert progress.cleanup_needed(body, settings) is needed
    plan = progress.cleanup(body, settings)
    assert len(plan.create) == creates and reasons(plan) == events
    if creates:
        assert [e.reason for e in plan.on_created] == ["DeletingFiles"]


def test_cleanup_of_a_file_repository_keeps_the_files() -> None:
    body = resource(target={"deletionPolicy": "Delete", "repository": "file:///models"})
    plan = progress.cleanup(body, SETTINGS)
    assert not plan.create and reasons(plan) == ["FilesKept"]
    broken = {**body, "spec": {"source": {}}}
    assert progress.cleanup(broken, SETTINGS) == Plan() and not progress.cleanup_needed(broken, SETTINGS)


def test_a_queue_managed_job_is_created_suspended_with_its_queue() -> None:
    body = resource(converter={"queueName": "gpus"})
    plan = decide.create_job(body, model_from_body(body), job_of(body), SETTINGS)
    job_body = plan.create[1]
    assert job_body["spec"]["suspend"] is True
    assert job_body["metadata"]["labels"][queueing.QUEUE_NAME_LABEL] == "gpus"
    assert queueing.job_slot(job_body) is None, "Kueue admits it: it holds none of the operator's slots"
    plain = decide.create_job(GEN1, model_from_body(GEN1), job_of(GEN1), SETTINGS).create[1]
    assert "suspend" not in plain["spec"] and queueing.job_slot(plain) == queueing.NO_GPU
