"""Decide, then act: a ``Plan`` is what one observation calls for, and ``act`` does it.

Decision functions (``decide.py`` for conversions; serving's too) are pure: they take what was
observed (the resource, its Jobs, Pods, slots) and return a Plan. ``act`` is the only place that
turns a Plan into API calls, in a fixed order: delete Jobs, create objects, write the one status
patch (conditional on resourceVersion, re-decided on a conflict), post Events, record the metric,
and last ask kopf to retry.

The status part of a Plan is a pure function of the body rather than a fixed patch: when another
writer got there first, ``act`` re-reads the resource and asks it again, so a stale read is never
written over a fresh one. Events go only with a status write that happened (or a Plan without one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from edgeopt.operator import metrics
from edgeopt.operator.kube import KubeError
from edgeopt.operator.runtime import Runtime
from edgeopt.operator.status import changed

#: body -> the status patch to write onto exactly that body, or None (nothing to say).
StatusDecision = Callable[[Mapping[str, Any]], "dict[str, Any] | None"]
#: Re-reads after a resourceVersion conflict before giving up (kopf or the next event retries).
CONFLICT_RETRIES = 4


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Retry:
    """Ask kopf to run the handler again after ``delay`` seconds (kopf.TemporaryError)."""

    message: str
    delay: float


@dataclass(frozen=True)
class Plan:
    """What to do about one observation; every part optional. See the module docstring for the order."""

    delete_jobs: tuple[str, ...] = ()  # Job names in the resource's namespace
    create: tuple[dict[str, Any], ...] = ()  # ConfigMaps and Jobs, in order; a 409 adopts what exists
    status: StatusDecision | None = None
    events: tuple[Event, ...] = ()  # with the status write (or unconditionally when there is none)
    on_created: tuple[Event, ...] = ()  # only when a Job in ``create`` was made by this call
    metric: tuple[str, str, float | None] | None = None  # metrics.record_conversion(result, reason, seconds)
    retry: Retry | None = None


@dataclass
class Acted:
    """What ``act`` did: the Jobs it made or found, and whether the status was written."""

    jobs: list[tuple[dict[str, Any], bool]] = field(default_factory=list)  # (job, created by this call)
    written: bool = True
    body: Mapping[str, Any] | None = None  # the body the status was decided from


def when_changed(transition: Callable[[Mapping[str, Any]], dict[str, Any] | None]) -> StatusDecision:
    """A StatusDecision from a status transition: None when the patch would change nothing."""

    def decide(body: Mapping[str, Any]) -> dict[str, Any] | None:
        st = body.get("status") or {}
        patch = transition(st)
        return patch if patch is not None and changed(st, patch) else None

    return decide


def post_event(obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
    """An Event on ``obj`` (any mapping with apiVersion/kind/metadata; kopf types it as Body)."""
    target: Any = dict(obj)
    # kopf.event, not kopf.info: posting.level (WARNING) keeps kopf's own chatter out, not ours.
    kopf.event(target, type="Warning" if warning else "Normal", reason=reason, message=message)


def patch_status_checked(rt: Runtime, body: Mapping[str, Any], decide: StatusDecision) -> Mapping[str, Any] | None:
    """Write ``decide(body)`` onto exactly the status it was decided from; on a conflict, re-read and decide again.

    Two writers (Job events, Pod events, the serving timer) may act on the same resource at once; a
    patch conditional on resourceVersion means one never overwrites what the other just wrote from a
    stale read. Returns the body the patch was decided from (None: nothing to do, or the resource is gone).
    """
    meta = body["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], meta.get("uid")
    for _ in range(CONFLICT_RETRIES):
        patch = decide(body)
        if patch is None:
            return None
        try:
            rt.kube.patch_model_status(ns, name, patch, resource_version=body["metadata"].get("resourceVersion"))
            return body
        except KubeError as exc:
            if exc.status != 409:
                raise
        fresh = rt.kube.read_model(ns, name)
        if fresh is None or fresh["metadata"].get("uid") != uid:
            return None
        body = fresh
    raise KubeError(f"the status of {ns}/{name} kept changing under us; retrying later", status=409, temporary=True)


def act(rt: Runtime, body: Mapping[str, Any], plan: Plan) -> Acted:
    """Do ``plan`` for the resource ``body``; KubeError from the API is the caller's to map."""
    ns = body["metadata"]["namespace"]
    for job in plan.delete_jobs:
        rt.kube.delete_job(ns, job)
    acted = Acted(body=body)
    for obj in plan.create:
        if obj.get("kind") == "Job":
            acted.jobs.append(rt.kube.create_job(obj))
        else:
            rt.kube.create_configmap(obj)
    if plan.status is not None:
        decided_from = patch_status_checked(rt, body, plan.status)
        acted.written = decided_from is not None
        acted.body = decided_from or body
    if acted.written:
        for e in plan.events:
            post_event(acted.body or body, e.reason, e.message, warning=e.warning)
        if plan.metric:
            metrics.record_conversion(*plan.metric)
    if any(created for _, created in acted.jobs):
        for e in plan.on_created:
            post_event(body, e.reason, e.message, warning=e.warning)
    if plan.retry:
        raise kopf.TemporaryError(plan.retry.message, delay=plan.retry.delay)
    return acted
