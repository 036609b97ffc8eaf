"""Status as data: conditions, phases and the converter's summary.

Pure functions of (old status, what was observed) → status patch, so every
transition the operator can make is unit-tested without a cluster. Conditions
follow the Kubernetes conventions (type/status/reason/message/
lastTransitionTime/observedGeneration); ``Ready`` summarises the others so that
``kubectl wait --for=condition=Ready`` works.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edgeopt.artifact import Summary
from edgeopt.operator import job_output
from edgeopt.operator.diagnosis import DEADLINE_EXCEEDED, HINTS, Diagnosis

PENDING, CONVERTING, PUBLISHING, READY, FAILED = "Pending", "Converting", "Publishing", "Ready", "Failed"
PHASES = (PENDING, CONVERTING, PUBLISHING, READY, FAILED)
TERMINAL = (READY, FAILED)

CONVERTED, PUBLISHED, SERVING_READY, READY_CONDITION = "Converted", "Published", "ServingReady", "Ready"
WAITING_FOR_CAPACITY = "WaitingForCapacity"
ROLLED_BACK = "RolledBack"

# Job states, as the operator sees them.
JOB_PENDING, JOB_STARTING, JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED = (
    "Pending",
    "Starting",
    "Running",
    "Succeeded",
    "Failed",
)
#: Job states that hold a conversion slot.
JOB_UNFINISHED = (JOB_PENDING, JOB_STARTING, JOB_RUNNING)

#: Condition messages are shown by kubectl; keep them readable.
MESSAGE_LIMIT = 2048


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""


def merge_conditions(
    old: Iterable[Mapping[str, Any]] | None,
    new: Iterable[Condition],
    *,
    generation: int,
    timestamp: str | None = None,
) -> list[dict[str, Any]]:
    """Apply ``new`` over ``old``; lastTransitionTime moves only when the status flips."""
    ts = timestamp or now()
    merged: dict[str, dict[str, Any]] = {c["type"]: dict(c) for c in (old or []) if "type" in c}
    for c in new:
        prev = merged.get(c.type)
        moved = prev is None or prev.get("status") != c.status
        merged[c.type] = {
            "type": c.type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message[:MESSAGE_LIMIT],
            "lastTransitionTime": ts if moved else prev.get("lastTransitionTime", ts),  # type: ignore[union-attr]
            "observedGeneration": generation,
        }
    order = {t: i for i, t in enumerate((CONVERTED, PUBLISHED, SERVING_READY, READY_CONDITION))}
    return sorted(merged.values(), key=lambda c: (order.get(c["type"], 99), c["type"]))


def condition(status: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    for c in (status or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


# --------------------------------------------------------------------------- Job and Pod state


def job_state(job: Mapping[str, Any] | None) -> str:
    """Pending (no Pod), Starting (Pod not running yet), Running, Succeeded or Failed, from the Job's status."""
    st = (job or {}).get("status") or {}
    for c in st.get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "SuccessCriteriaMet"):
            return JOB_SUCCEEDED
        if c.get("status") == "True" and c.get("type") in ("Failed", "FailureTarget"):
            return JOB_FAILED
    if (st.get("succeeded") or 0) >= 1:
        return JOB_SUCCEEDED
    # ``ready`` counts Pods whose container runs; ``active`` also counts Pods still
    # waiting to be scheduled (a missing PVC, no GPU free), which are not converting yet.
    running = st.get("ready") if st.get("ready") is not None else st.get("active")
    if (running or 0) >= 1:
        return JOB_RUNNING
    if (st.get("active") or 0) >= 1:
        return JOB_STARTING
    return JOB_PENDING


def job_failure(job: Mapping[str, Any] | None) -> tuple[str, str]:
    """The Job's own reason and message for failing (deadline, backoff limit)."""
    for c in ((job or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            reason = c.get("reason") or "JobFailed"
            message = c.get("message") or "the conversion Job failed"
            if reason == DEADLINE_EXCEEDED:
                deadline = ((job or {}).get("spec") or {}).get("activeDeadlineSeconds")
                took = f" (activeDeadlineSeconds={deadline})" if deadline else ""
                hint = HINTS[DEADLINE_EXCEEDED]
                message = f"{message.rstrip('. ')}{took}. {hint[0].upper()}{hint[1:]}."
            return reason, message
    return "JobFailed", "the conversion Job failed"


def job_seconds(job: Mapping[str, Any] | None) -> float | None:
    st = (job or {}).get("status") or {}
    start, end = st.get("startTime"), st.get("completionTime")
    if not start or not end:
        return None
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return (dt.datetime.strptime(end, fmt) - dt.datetime.strptime(start, fmt)).total_seconds()


def terminated_message(pods: Iterable[Mapping[str, Any]], container: str) -> tuple[str | None, int | None]:
    """(message, exit code) of the container that finished last among the Job's Pods."""
    best: tuple[str, str | None, int | None] | None = None
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != container:
                continue
            term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if not term:
                continue
            key = term.get("finishedAt") or ""
            if best is None or key >= best[0]:
                best = (key, term.get("message"), term.get("exitCode"))
    if best is None:
        return None, None
    return best[1], best[2]


def parse_summary(message: str | None, exit_code: int | None, *, succeeded: bool) -> Summary:
    """The converter's Summary, or a stand-in when it died before writing one.

    With FallbackToLogsOnError the message may be the log's tail instead of
    JSON; that tail is the best explanation there is, so it becomes the message.
    """
    text = (message or "").strip()
    if succeeded or job_output.looks_like_summary(text):  # a converter that succeeded always wrote one
        return job_output.summary_or_invalid(text, succeeded=succeeded)
    detail = text[-MESSAGE_LIMIT:] if text else "no termination message"
    code = f" with exit code {exit_code}" if exit_code is not None else ""
    return Summary(ok=False, reason="ConverterCrashed", message=f"the converter exited{code}: {detail}")


# --------------------------------------------------------------------------- transitions


def _patch(
    status: Mapping[str, Any] | None,
    generation: int,
    phase: str,
    conditions: list[Condition],
    **fields: Any,
) -> dict[str, Any]:
    return {
        "phase": phase,
        "observedGeneration": generation,
        "conditions": merge_conditions((status or {}).get("conditions"), conditions, generation=generation),
        **fields,
    }


def waiting_for_capacity(status: Mapping[str, Any] | None, generation: int, running: int, limit: int) -> dict[str, Any]:
    msg = f"{running} of {limit} conversions are running; this one starts when a slot frees up (in creation order)"
    return _patch(status, generation, PENDING, [Condition(READY_CONDITION, "False", WAITING_FOR_CAPACITY, msg)])


def job_created(
    status: Mapping[str, Any] | None, generation: int, job: str, model_name: str, precision: str
) -> dict[str, Any]:
    msg = f"Job {job} created for generation {generation}"
    return _patch(
        status,
        generation,
        PENDING,
        [
            Condition(CONVERTED, "Unknown", "JobCreated", msg),
            Condition(PUBLISHED, "Unknown", "JobCreated", msg),
            Condition(READY_CONDITION, "False", "JobCreated", msg),
        ],
        jobName=job,
        modelName=model_name,
        precision=precision,
        startTime=now(),
        completionTime=None,
    )


def job_running(status: Mapping[str, Any] | None, generation: int, job: str) -> dict[str, Any]:
    msg = f"Job {job} is converting the model"
    return _patch(
        status,
        generation,
        CONVERTING,
        [Condition(CONVERTED, "Unknown", "Converting", msg), Condition(READY_CONDITION, "False", "Converting", msg)],
    )


def pod_diagnosed(status: Mapping[str, Any] | None, generation: int, diagnosis: Diagnosis) -> dict[str, Any]:
    """The Pod's own reason on Converted and Ready; the phase stays where it is (Pending or Converting)."""
    phase = (status or {}).get("phase")
    phase = phase if phase in (PENDING, CONVERTING) else PENDING
    message = diagnosis.message
    if diagnosis.ended:
        message = f"{message} The Job retries with a new Pod while its backoffLimit allows."
    return _patch(
        status,
        generation,
        phase,
        [
            Condition(CONVERTED, "Unknown", diagnosis.reason, message),
            Condition(READY_CONDITION, "False", diagnosis.reason, message),
        ],
    )


@dataclass(frozen=True)
class PodDecision:
    """What to do about one Pod observation: a status patch, and an Event when the reason is new."""

    patch: dict[str, Any]
    event: bool


def decide_pod(
    status: Mapping[str, Any] | None, generation: int, job: str, diagnosis: Diagnosis | None
) -> PodDecision | None:
    """None when there is nothing to say: the Pod is fine, or the status already says exactly this.

    Only the current generation's Job, and only while it converts: a Job's own
    end (Published, Failed) is reported by ``job_succeeded``/``job_failed``.
    One Event per distinct reason, however often the Pod is seen.
    """
    st = status or {}
    if diagnosis is None or st.get("observedGeneration") != generation or st.get("jobName") != job:
        return None
    if st.get("phase") not in (PENDING, CONVERTING):
        return None
    ready = condition(st, READY_CONDITION) or {}
    patch = pod_diagnosed(st, generation, diagnosis)
    if not changed(st, patch):
        return None
    return PodDecision(patch, event=ready.get("reason") != diagnosis.reason)


#: Report keys that a history entry keeps: enough to compare versions at a glance.
HISTORY_SUMMARY_KEYS = (
    "opsBefore",
    "opsAfter",
    "precision",
    "trtEngines",
    "maxAbsError",
    "latencyMsBefore",
    "latencyMsAfter",
    "backend",
)


def history_entry(summary: Summary, generation: int, job: str | None, time: str | None = None) -> dict[str, Any]:
    report = summary.report or {}
    entry: dict[str, Any] = {
        "version": summary.version,
        "generation": generation,
        "time": time or now(),
        "summary": {k: report[k] for k in HISTORY_SUMMARY_KEYS if report.get(k) is not None},
    }
    if job:
        entry["job"] = job
    return entry


def add_history(
    history: Iterable[Mapping[str, Any]] | None, entry: Mapping[str, Any], keep: int
) -> list[dict[str, Any]]:
    """Newest first, one entry per version, at most ``keep`` (the repository's versionsToKeep)."""
    rest = [dict(h) for h in history or [] if h.get("version") != entry.get("version")]
    return [dict(entry), *rest][: max(keep, 1)]


def history_versions(status: Mapping[str, Any] | None) -> list[int]:
    return [int(h["version"]) for h in (status or {}).get("history") or [] if h.get("version") is not None]


def rollback_target(status: Mapping[str, Any] | None, generation: int, spec_version: int | None) -> int | None:
    """The kept version to serve again, when ``spec.target.version`` names one in the history.

    None when it names no kept version (a normal conversion publishes it), or
    when this generation's rollback is already recorded.
    """
    st = status or {}
    if spec_version is None or spec_version not in history_versions(st):
        return None
    published = condition(st, PUBLISHED) or {}
    if st.get("observedGeneration") == generation and published.get("reason") == ROLLED_BACK:
        return None
    return spec_version


def job_succeeded(
    status: Mapping[str, Any] | None,
    generation: int,
    summary: Summary,
    *,
    serving: bool,
    job: str | None = None,
    keep: int = 3,
) -> dict[str, Any]:
    """Converted and published; Ready now when there is no Triton to load into."""
    version = summary.version
    report = dict(summary.report)
    published = f"version {version} of {summary.model} published" if summary.model else f"version {version} published"
    conds = [
        Condition(CONVERTED, "True", "Converted", _conversion_message(report)),
        Condition(PUBLISHED, "True", "Published", published),
    ]
    extra: dict[str, Any] = {"modelVersion": version, "report": report, "completionTime": now()}
    if version is not None:
        entry = history_entry(summary, generation, job or (status or {}).get("jobName"))
        extra["history"] = add_history((status or {}).get("history"), entry, keep)
    if report.get("precision"):
        extra["precision"] = report["precision"]
    if serving:
        conds += [
            Condition(SERVING_READY, "Unknown", "Loading", f"loading {published.split(' published')[0]} into Triton"),
            Condition(READY_CONDITION, "False", "Loading", f"{published}; loading into Triton"),
        ]
        return _patch(status, generation, PUBLISHING, conds, **extra)
    conds += [
        Condition(
            SERVING_READY, "Unknown", "NoTritonURL", "no spec.serving.tritonURL or EDGEOPT_TRITON_URL; not loaded"
        ),
        Condition(READY_CONDITION, "True", "Published", published),
    ]
    return _patch(status, generation, READY, conds, **extra)


def _conversion_message(report: Mapping[str, Any]) -> str:
    parts = []
    if "opsBefore" in report and "opsAfter" in report:
        parts.append(f"ops {report['opsBefore']} -> {report['opsAfter']}")
    if report.get("trtEngines") is not None:
        parts.append(f"{report['trtEngines']} TensorRT engines")
    if report.get("maxAbsError") is not None:
        parts.append(f"max abs error {report['maxAbsError']:.3g}")
    if report.get("latencyMsBefore") is not None and report.get("latencyMsAfter") is not None:
        parts.append(f"latency {report['latencyMsBefore']:.3g} -> {report['latencyMsAfter']:.3g} ms")
    return "converted and validated" + (": " + ", ".join(parts) if parts else "")


def job_failed(status: Mapping[str, Any] | None, generation: int, summary: Summary) -> dict[str, Any]:
    """Failed with the converter's own reason and message; nothing was published."""
    reason = summary.reason or "ConversionFailed"
    conds = [
        Condition(PUBLISHED, "False", reason, summary.message),
        Condition(READY_CONDITION, "False", reason, summary.message),
    ]
    if reason != "PublishFailed":
        conds.insert(0, Condition(CONVERTED, "False", reason, summary.message))
    return _patch(status, generation, FAILED, conds, completionTime=now())


def invalid_spec(status: Mapping[str, Any] | None, generation: int, message: str) -> dict[str, Any]:
    return _patch(
        status,
        generation,
        FAILED,
        [
            Condition(CONVERTED, "False", "InvalidSpec", message),
            Condition(READY_CONDITION, "False", "InvalidSpec", message),
        ],
    )


def serving_ready(
    status: Mapping[str, Any] | None, generation: int, message: str, *, versions: list[int] | None = None
) -> dict[str, Any]:
    """Served; ``versions`` are what Triton serves now (the publisher never prunes them)."""
    extra: dict[str, Any] = {"servingAttempts": None}
    if versions is not None:
        extra["servingVersions"] = sorted(versions)
    return _patch(
        status,
        generation,
        READY,
        [Condition(SERVING_READY, "True", "Loaded", message), Condition(READY_CONDITION, "True", "Serving", message)],
        **extra,
    )


def serving_failed(status: Mapping[str, Any] | None, generation: int, reason: str, message: str) -> dict[str, Any]:
    """Triton refused the version (or it failed its smoke test) too often: Failed, still published.

    The version Triton served before, if any, is untouched: a failed reload keeps it.
    """
    return _patch(
        status,
        generation,
        FAILED,
        [Condition(SERVING_READY, "False", reason, message), Condition(READY_CONDITION, "False", reason, message)],
        servingAttempts=None,
    )


def rolling_back(status: Mapping[str, Any] | None, generation: int, version: int, *, serving: bool) -> dict[str, Any]:
    """spec.target.version names a kept version: serve it again, no conversion."""
    entry: Mapping[str, Any] = next((h for h in (status or {}).get("history") or [] if h.get("version") == version), {})
    what = f"version {version} (published by generation {entry.get('generation', '?')}) is kept in the repository"
    conds = [
        Condition(CONVERTED, "True", ROLLED_BACK, f"{what}; no conversion needed"),
        Condition(PUBLISHED, "True", ROLLED_BACK, what),
    ]
    if serving:
        conds += [
            Condition(SERVING_READY, "Unknown", "RollingBack", f"switching Triton to version {version}"),
            Condition(READY_CONDITION, "False", "RollingBack", f"rolling back to version {version}"),
        ]
        phase = PUBLISHING
    else:
        conds += [Condition(READY_CONDITION, "True", ROLLED_BACK, f"{what}; no Triton to load into")]
        phase = READY
    return _patch(
        status,
        generation,
        phase,
        conds,
        modelVersion=version,
        jobName=None,
        report=entry.get("summary") or (status or {}).get("report"),
        servingAttempts=None,
    )


def serving_unavailable(status: Mapping[str, Any] | None, generation: int, reason: str, message: str) -> dict[str, Any]:
    """Published but not (yet) served; the phase stays Publishing while it retries."""
    return _patch(
        status,
        generation,
        PUBLISHING,
        [Condition(SERVING_READY, "False", reason, message), Condition(READY_CONDITION, "False", reason, message)],
    )


def changed(status: Mapping[str, Any] | None, patch: Mapping[str, Any]) -> bool:
    """Whether applying ``patch`` would change anything but timestamps (saves an API call)."""
    old = dict(status or {})

    def strip(conds: Any) -> Any:
        return [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in conds or []]

    for key, value in patch.items():
        if key in ("startTime", "completionTime"):
            continue
        if key == "conditions":
            if strip(value) != strip(old.get("conditions")):
                return True
        elif json.dumps(old.get(key), sort_keys=True) != json.dumps(value, sort_keys=True):
            return True
    return False
