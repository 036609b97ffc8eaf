"""Status transitions, conditions and Summary parsing, without a cluster."""

from __future__ import annotations

from typing import Any

from edgeopt.artifact import Summary
from edgeopt.operator import status as S


def conds(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in st["conditions"]}


def test_conditions_follow_kubernetes_conventions() -> None:
    merged = S.merge_conditions([], [S.Condition("Ready", "False", "JobCreated", "m")], generation=2, timestamp="T1")
    assert merged == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "JobCreated",
            "message": "m",
            "lastTransitionTime": "T1",
            "observedGeneration": 2,
        }
    ]
    # Same status, new reason: the transition time stays.
    again = S.merge_conditions(merged, [S.Condition("Ready", "False", "Converting", "")], generation=2, timestamp="T2")
    assert again[0]["lastTransitionTime"] == "T1" and again[0]["reason"] == "Converting"
    flipped = S.merge_conditions(again, [S.Condition("Ready", "True", "Published", "")], generation=3, timestamp="T3")
    assert flipped[0]["lastTransitionTime"] == "T3" and flipped[0]["observedGeneration"] == 3


def test_condition_order_is_stable() -> None:
    new = [S.Condition(t, "Unknown", "x") for t in ("Ready", "ServingReady", "Converted", "Published")]
    assert [c["type"] for c in S.merge_conditions(None, new, generation=1)] == [
        "Converted",
        "Published",
        "ServingReady",
        "Ready",
    ]


def job(**status: Any) -> dict[str, Any]:
    return {"status": status}


def test_job_state_from_job_status() -> None:
    assert S.job_state(None) == S.JOB_PENDING
    assert S.job_state(job()) == S.JOB_PENDING
    assert S.job_state(job(active=1)) == S.JOB_RUNNING  # a cluster that does not report ready
    assert S.job_state(job(active=1, ready=0)) == S.JOB_STARTING  # e.g. unschedulable
    assert S.job_state(job(active=1, ready=1)) == S.JOB_RUNNING
    assert S.job_state(job(succeeded=1)) == S.JOB_SUCCEEDED
    assert S.job_state(job(conditions=[{"type": "Complete", "status": "True"}])) == S.JOB_SUCCEEDED
    failed = job(failed=1, conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}])
    assert S.job_state(failed) == S.JOB_FAILED
    assert S.job_failure(failed)[0] == "BackoffLimitExceeded"
    assert S.job_state(job(active=1, conditions=[{"type": "Failed", "status": "False"}])) == S.JOB_RUNNING
    assert S.job_seconds(job(startTime="2026-01-01T00:00:00Z", completionTime="2026-01-01T00:00:42Z")) == 42


def pod(message: str | None, code: int, finished: str) -> dict[str, Any]:
    term = {"exitCode": code, "finishedAt": finished, **({"message": message} if message is not None else {})}
    return {"status": {"containerStatuses": [{"name": "convert", "state": {"terminated": term}}]}}


def test_summary_comes_from_the_last_finished_pod() -> None:
    first = Summary(ok=False, reason="InvalidInput", message="first").to_json()
    last = Summary(ok=False, reason="InvalidInput", message="no node 'z'; candidates: y").to_json()
    msg, code = S.terminated_message(
        [pod(last, 3, "2026-01-01T00:01:00Z"), pod(first, 3, "2026-01-01T00:00:00Z")], "convert"
    )
    assert code == 3
    summary = S.parse_summary(msg, code, succeeded=False)
    assert (summary.ok, summary.reason, summary.message) == (False, "InvalidInput", "no node 'z'; candidates: y")
    assert S.terminated_message([], "convert") == (None, None)


def test_log_tail_stands_in_for_a_missing_summary() -> None:
    s = S.parse_summary("Traceback ...\nMemoryError", 137, succeeded=False)
    assert s.reason == "ConverterCrashed" and "137" in s.message and "MemoryError" in s.message
    # A Job that succeeded always wrote its summary; without one nothing can be trusted.
    missing = S.parse_summary(None, None, succeeded=True)
    assert not missing.ok and missing.reason == "InvalidJobOutput"


def test_phase_walk_to_ready_without_triton() -> None:
    st: dict[str, Any] = {}
    st.update(S.job_created(st, 1, "add-g1-abc", "add", "FP32"))
    assert st["phase"] == S.PENDING and st["jobName"] == "add-g1-abc" and st["observedGeneration"] == 1
    st.update(S.job_running(st, 1, "add-g1-abc"))
    assert st["phase"] == S.CONVERTING
    summary = Summary(ok=True, reason="Published", message="ok", model="add", version=1, report={"opsAfter": 3})
    st.update(S.job_succeeded(st, 1, summary, serving=False))
    c = conds(st)
    assert st["phase"] == S.READY and st["modelVersion"] == 1 and st["report"] == {"opsAfter": 3}
    assert c["Converted"]["status"] == c["Published"]["status"] == c["Ready"]["status"] == "True"
    assert c["ServingReady"]["status"] == "Unknown"


def test_phase_walk_with_triton() -> None:
    st: dict[str, Any] = {}
    summary = Summary(ok=True, reason="Published", message="ok", model="add", version=2)
    st.update(S.job_succeeded(st, 1, summary, serving=True))
    assert st["phase"] == S.PUBLISHING and conds(st)["Ready"]["status"] == "False"
    st.update(S.serving_unavailable(st, 1, "TritonError", "connection refused"))
    assert st["phase"] == S.PUBLISHING and conds(st)["ServingReady"]["status"] == "False"
    st.update(S.serving_ready(st, 1, "loaded"))
    assert st["phase"] == S.READY and conds(st)["ServingReady"]["status"] == "True"
    assert conds(st)["Ready"]["status"] == "True"


def test_failure_carries_the_converters_words() -> None:
    summary = Summary(ok=False, reason="InvalidInput", message="output node 'z' not found; candidates: y")
    st = S.job_failed({}, 4, summary)
    c = conds(st)
    assert st["phase"] == S.FAILED
    assert c["Converted"]["reason"] == "InvalidInput" and "'z'" in c["Converted"]["message"]
    assert c["Ready"]["status"] == "False" and c["Published"]["status"] == "False"
    published_failed = S.job_failed({}, 4, Summary(ok=False, reason="PublishFailed", message="disk full"))
    assert "Converted" not in conds(published_failed)


def test_waiting_for_capacity_and_change_detection() -> None:
    st = S.waiting_for_capacity({}, 1, 1, 1)
    assert st["phase"] == S.PENDING and conds(st)["Ready"]["reason"] == S.WAITING_FOR_CAPACITY
    assert S.changed({}, st)
    assert not S.changed(st, S.waiting_for_capacity(st, 1, 1, 1))
    assert S.changed(st, S.waiting_for_capacity(st, 2, 1, 1))


# --------------------------------------------------------------------------- history and rollback


def published(version: int, gen: int, st: dict[str, Any] | None = None, keep: int = 3) -> dict[str, Any]:
    summary = Summary(
        True,
        "Published",
        "ok",
        model="add",
        version=version,
        report={"opsBefore": 9, "opsAfter": 4, "precision": "FP32", "signature": {"big": 1}},
    )
    return {**(st or {}), **S.job_succeeded(st, gen, summary, serving=True, job=f"add-g{gen}-abc", keep=keep)}


def test_history_keeps_the_last_versions_to_keep_newest_first() -> None:
    st: dict[str, Any] = {}
    for gen, version in enumerate((1, 2, 3, 4), start=1):
        st = published(version, gen, st, keep=3)
    assert [h["version"] for h in st["history"]] == [4, 3, 2]
    newest = st["history"][0]
    assert newest["generation"] == 4 and newest["job"] == "add-g4-abc" and newest["time"]
    # The summary is the comparison at a glance, not the whole report.
    assert newest["summary"] == {"opsBefore": 9, "opsAfter": 4, "precision": "FP32"}
    assert S.history_versions(st) == [4, 3, 2]


def test_a_kept_version_in_spec_target_version_is_a_rollback_once() -> None:
    st: dict[str, Any] = {}
    for gen, version in enumerate((1, 2), start=1):
        st = published(version, gen, st)
    st = {**st, **S.serving_ready(st, 2, "served", versions=[2])}
    assert S.rollback_target(st, 3, None) is None  # no version asked: convert
    assert S.rollback_target(st, 3, 7) is None  # not kept: a conversion publishes it as 7
    assert S.rollback_target(st, 3, 1) == 1
    patch = S.rolling_back(st, 3, 1, serving=True)
    assert patch["phase"] == "Publishing" and patch["modelVersion"] == 1 and patch["observedGeneration"] == 3
    assert patch["jobName"] is None and patch["report"] == st["history"][1]["summary"]
    assert S.condition(patch, "Published")["reason"] == "RolledBack"  # type: ignore[index]
    assert S.condition(patch, "Ready")["reason"] == "RollingBack"  # type: ignore[index]
    assert "generation 1" in S.condition(patch, "Published")["message"]  # type: ignore[index]
    st = {**st, **patch}
    assert S.rollback_target(st, 3, 1) is None, "recorded: not started again on resume"
    # Without Triton, the rollback is immediate.
    assert S.rolling_back(st, 3, 2, serving=False)["phase"] == "Ready"


def test_serving_outcomes() -> None:
    st = published(2, 1)
    ready = S.serving_ready({**st, "servingAttempts": 2}, 1, "served", versions=[2])
    assert ready["servingVersions"] == [2] and ready["servingAttempts"] is None and ready["phase"] == "Ready"
    failed = S.serving_failed(st, 1, "LoadFailed", "Triton said no (gave up after 5 attempts)")
    assert failed["phase"] == "Failed"
    assert S.condition(failed, "ServingReady")["reason"] == "LoadFailed"  # type: ignore[index]
    assert S.condition(failed, "Published")["status"] == "True", "the version stays published"  # type: ignore[index]
