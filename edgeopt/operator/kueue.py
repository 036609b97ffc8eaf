"""Kueue, when the cluster has it: what a queue-managed conversion Job carries, and Kueue's word on it.

With a queue name (``spec.converter.queueName`` or the chart's
``converter.queueName``) the operator creates its Job suspended and labelled
``kueue.x-k8s.io/queue-name``; Kueue's job integration then makes a Workload
for it (owned by the Job, labelled ``kueue.x-k8s.io/job-uid``), admits it by
quota and resource flavor, and unsuspends the Job. Admission is Kueue's: the
operator's own conversion slots step aside for such Jobs.

Until its Pod exists a suspended Job says nothing, so the status shows the
Workload's own words instead: its ``QuotaReserved``/``Admitted`` conditions
and the reason Kueue gives for keeping it pending ("couldn't assign flavors to
pod set main: insufficient unused quota for nvidia.com/gpu in flavor gpu, 1
more needed"). Once admitted, the Pod speaks again (``diagnosis``).

Pure functions of the Job and Workload dicts as the API returns them, checked
against the real Kueue controller in tests/k8s/test_kueue.py; ``observe`` is
the one call that reads the API.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from edgeopt.operator import status
from edgeopt.operator.diagnosis import Diagnosis
from edgeopt.spec import QUEUE_NAME_PATTERN

if TYPE_CHECKING:
    from edgeopt.operator.kube import Kube

#: The label Kueue's job integration reads: the LocalQueue (in the Job's namespace) to admit it through.
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
#: The label Kueue puts on the Workload it makes for a Job: that Job's uid.
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
GROUP, VERSION, PLURAL = "kueue.x-k8s.io", "v1beta2", "workloads"

# The Workload's conditions, as Kueue names them (apis/kueue/v1beta2/workload_types.go).
QUOTA_RESERVED, ADMITTED, EVICTED, FINISHED = "QuotaReserved", "Admitted", "Evicted", "Finished"

# The OptimizedModel's reasons while Kueue holds its Job (Converted=Unknown, Ready=False).
QUEUED_IN_KUEUE = "QueuedInKueue"
QUOTA_RESERVED_REASON = "QuotaReserved"
WAITING_FOR_KUEUE = "WaitingForKueue"
EVICTED_BY_KUEUE = "EvictedByKueue"
KUEUE_REASONS = (QUEUED_IN_KUEUE, QUOTA_RESERVED_REASON, WAITING_FOR_KUEUE, EVICTED_BY_KUEUE)

#: A LocalQueue name: the spec's own pattern for ``spec.converter.queueName`` (one source).
_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)


def queue_name_error(name: str) -> str | None:
    """Why ``name`` cannot name a LocalQueue (and so label a Job), or None when it can."""
    if not _QUEUE_NAME.match(name):
        return (
            f"queueName {name!r} is not a LocalQueue name: at most 63 lower-case letters, digits, '-' or '.', "
            "starting and ending with a letter or digit"
        )
    return None


def queue_job(job: Mapping[str, Any], queue_name: str) -> dict[str, Any]:
    """``job`` made queue-managed: created suspended, labelled with its LocalQueue; Kueue unsuspends it.

    Raises ValueError (with ``queue_name_error``'s words) for a name no LocalQueue can have.
    """
    error = queue_name_error(queue_name)
    if error:
        raise ValueError(error)
    out = copy.deepcopy(dict(job))
    out.setdefault("metadata", {}).setdefault("labels", {})[QUEUE_LABEL] = queue_name
    out.setdefault("spec", {})["suspend"] = True
    return out


def queue_of(job: Mapping[str, Any] | None) -> str | None:
    """The LocalQueue a Job is managed through, or None for a Job the operator's own slots admit."""
    return ((job or {}).get("metadata") or {}).get("labels", {}).get(QUEUE_LABEL)


def suspended(job: Mapping[str, Any] | None) -> bool:
    return bool(((job or {}).get("spec") or {}).get("suspend"))


def workload_selector(job_uid: str) -> str:
    return f"{JOB_UID_LABEL}={job_uid}"


def workload_for(workloads: Iterable[Mapping[str, Any]], job_uid: str) -> Mapping[str, Any] | None:
    """The Workload the Job with ``job_uid`` owns (the newest, should there be a leftover)."""
    owned = [
        w
        for w in workloads
        if any(ref.get("uid") == job_uid for ref in (w.get("metadata") or {}).get("ownerReferences") or [])
        and not (w.get("metadata") or {}).get("deletionTimestamp")
    ]
    owned.sort(key=lambda w: (w.get("metadata") or {}).get("creationTimestamp") or "")
    return owned[-1] if owned else None


def _condition(workload: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    for c in (workload.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def _words(cond: Mapping[str, Any], type_: str) -> str:
    """A condition as Kueue wrote it: ``QuotaReserved=False (Pending): <message>``."""
    status = cond.get("status") or "Unknown"
    reason = f" ({cond['reason']})" if cond.get("reason") else ""
    message = f": {cond['message']}" if cond.get("message") else ""
    return f"{type_}={status}{reason}{message}"


def is_admitted(workload: Mapping[str, Any] | None) -> bool:
    return bool(workload) and _condition(workload or {}, ADMITTED).get("status") == "True"


def _flavors(workload: Mapping[str, Any]) -> str:
    admission = (workload.get("status") or {}).get("admission") or {}
    found = sorted(
        {
            f"{res}: {flavor}"
            for ps in admission.get("podSetAssignments") or []
            for res, flavor in (ps.get("flavors") or {}).items()
        }
    )
    queue = admission.get("clusterQueue")
    where = f"ClusterQueue {queue}" if queue else "its ClusterQueue"
    return f"{where} ({', '.join(found)})" if found else where


def admitted_note(workload: Mapping[str, Any] | None) -> str | None:
    """``admitted by Kueue to ClusterQueue gpu (nvidia.com/gpu: l4)``, for a status that the Pod now drives."""
    if not workload or not is_admitted(workload):
        return None
    return f"admitted by Kueue to {_flavors(workload)}"


def kueue_diagnosis(job: Mapping[str, Any], workload: Mapping[str, Any] | None) -> Diagnosis | None:
    """Kueue's word on a queue-managed Job that has no Pod to speak for it, or None when the Pod speaks.

    None for a Job that is not queue-managed, one Kueue admitted (its Pod's
    scheduling and start-up are ``diagnosis``'s to report) or one that finished.
    """
    queue = queue_of(job)
    if queue is None:
        return None
    name = (job.get("metadata") or {}).get("name", "?")
    if workload is None:
        if not suspended(job):
            return None
        return Diagnosis(
            WAITING_FOR_KUEUE,
            f"Job {name} waits, suspended, for Kueue to admit it through LocalQueue {queue}, and Kueue has "
            "made no Workload for it yet. Check that Kueue runs with the batch/job integration and that "
            f"LocalQueue {queue} exists in this namespace.",
        )
    wl = (workload.get("metadata") or {}).get("name", "?")
    if _condition(workload, FINISHED).get("status") == "True" or is_admitted(workload):
        return None
    reserved = _condition(workload, QUOTA_RESERVED)
    evicted = _condition(workload, EVICTED)
    if evicted.get("status") == "True":
        return Diagnosis(
            EVICTED_BY_KUEUE,
            f"Kueue evicted Workload {wl} and requeued it in LocalQueue {queue}: {_words(evicted, EVICTED)}; "
            f"{_words(reserved, QUOTA_RESERVED)}.",
        )
    if reserved.get("status") == "True":
        admitted = _condition(workload, ADMITTED)
        return Diagnosis(
            QUOTA_RESERVED_REASON,
            f"Kueue reserved quota for Workload {wl} in {_flavors(workload)}; admission checks pending: "
            f"{_words(admitted, ADMITTED)}.",
        )
    words = _words(reserved, QUOTA_RESERVED) if reserved else f"{QUOTA_RESERVED}: not evaluated yet"
    return Diagnosis(QUEUED_IN_KUEUE, f"queued in Kueue LocalQueue {queue} as Workload {wl}: {words}.")


def observe(kube: Kube, job: Mapping[str, Any]) -> Diagnosis | None:
    """Read the Job's Workload and return ``kueue_diagnosis``; an API that has no Workloads says so.

    Only for a queue-managed Job (else None, without a call). A 404 means no
    Kueue CRDs in the cluster, a 403 that the operator may not read Workloads
    (the chart's ``kueue.enabled``); both become the Diagnosis, never an error.
    """
    from edgeopt.operator.kube import KubeError

    if queue_of(job) is None:
        return None
    meta = job.get("metadata") or {}
    try:
        workloads = kube.list_workloads(meta.get("namespace") or "", workload_selector(meta.get("uid") or ""))
    except KubeError as exc:
        if exc.status not in (403, 404):
            raise
        why = (
            "the cluster has no Kueue Workload API (is Kueue installed?)"
            if exc.status == 404
            else "the operator may not read Kueue Workloads (set the chart value kueue.enabled=true)"
        )
        return Diagnosis(
            WAITING_FOR_KUEUE,
            f"Job {meta.get('name', '?')} waits, suspended, for Kueue (LocalQueue {queue_of(job)}); {why}: {exc}",
        )
    return kueue_diagnosis(job, workload_for(workloads, meta.get("uid") or ""))


def decide(
    kube: Kube, model_status: Mapping[str, Any] | None, generation: int, job: Mapping[str, Any]
) -> status.PodDecision | None:
    """The status patch (and whether to post an Event) for a queue-managed Job that has no Pod yet.

    Kueue's word goes through the same ``status.decide_pod`` as a Pod's own
    reason: Converted=Unknown and Ready=False with the reason and message of
    ``kueue_diagnosis``, only for the current generation's Job, only when it
    says something new. None for a Job the operator's own slots admit.
    """
    found = observe(kube, job)
    name = (job.get("metadata") or {}).get("name") or ""
    return status.decide_pod(model_status, generation, name, found) if found else None
