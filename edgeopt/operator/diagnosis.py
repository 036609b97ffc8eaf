"""Why a conversion waits or failed, read from its Job's Pods as kubelet and the scheduler report it.

A Job only counts Pods (active, ready, failed); the explanation a platform
engineer needs (no node with a GPU, a claim that does not exist, an image
that cannot be pulled, an OOM kill) is on the Pod: its ``PodScheduled``
condition, its container's ``waiting``/``terminated`` state, its own
``reason``. ``diagnose`` turns those into one (reason, message) for the
OptimizedModel's ``Converted`` and ``Ready`` conditions. Pure functions of the
Pod dicts as the API returns them, unit-tested on the real status shapes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

UNSCHEDULABLE = "Unschedulable"
CLAIM_NOT_FOUND = "ClaimNotFound"
CONFIG_NOT_FOUND = "ConfigNotFound"
OOM_KILLED = "OOMKilled"
DEADLINE_EXCEEDED = "DeadlineExceeded"
EVICTED = "Evicted"
#: Container waiting reasons kubelet reports that leave the converter unable to start.
IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
START_REASONS = ("CrashLoopBackOff", "CreateContainerError", "RunContainerError", "CreateContainerConfigError")

_CLAIM = re.compile(r'persistentvolumeclaim "([^"]+)" not found')
_CONFIG = re.compile(r'(configmap|secret) "([^"]+)" not found', re.IGNORECASE)

#: What to do about each reason, appended to the Pod's own words.
HINTS = {
    UNSCHEDULABLE: "no node fits the converter Pod; check spec.converter.resources (a GPU limit needs a GPU node), "
    "nodeSelector and tolerations",
    CLAIM_NOT_FOUND: "create the claim, or fix spec.source.uri / spec.target.repository",
    CONFIG_NOT_FOUND: "the Pod waits until it exists",
    "ErrImagePull": "check spec.converter.image (or EDGEOPT_CONVERTER_IMAGE) and the registry's pull secret",
    "ImagePullBackOff": "check spec.converter.image (or EDGEOPT_CONVERTER_IMAGE) and the registry's pull secret",
    "InvalidImageName": "fix spec.converter.image",
    OOM_KILLED: "the converter used more memory than its limit; raise spec.converter.resources.limits.memory",
    "CrashLoopBackOff": "the converter keeps crashing at start; see kubectl logs of the Pod",
    DEADLINE_EXCEEDED: "raise spec.converter.activeDeadlineSeconds if the model needs longer",
    EVICTED: "the node evicted the Pod; the Job retries it",
}


@dataclass(frozen=True)
class Diagnosis:
    """One Pod's reason, as the OptimizedModel shows it.

    ``ended``: the Pod itself is over (OOM kill, deadline, eviction); the Job
    may still retry with a new Pod, or fail, which its own status will say.
    """

    reason: str
    message: str
    ended: bool = False


def _hinted(reason: str, what: str) -> str:
    hint = HINTS.get(reason)
    return f"{what.rstrip('. ')}. {hint[0].upper()}{hint[1:]}." if hint else what


def _scheduling(pod: Mapping[str, Any]) -> Diagnosis | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            message = c.get("message") or c.get("reason") or "the Pod is not scheduled yet"
            claim = _CLAIM.search(message)
            if claim:
                return Diagnosis(CLAIM_NOT_FOUND, _hinted(CLAIM_NOT_FOUND, f"{claim.group(0)} ({message})"))
            if c.get("reason") == UNSCHEDULABLE:
                return Diagnosis(UNSCHEDULABLE, _hinted(UNSCHEDULABLE, message))
            return Diagnosis(c.get("reason") or "NotScheduled", message)
    return None


def _container(pod: Mapping[str, Any], container: str | None) -> Mapping[str, Any] | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for cs in statuses:
        if container is None or cs.get("name") == container:
            return dict(cs)
    return None


def _waiting(cs: Mapping[str, Any]) -> Diagnosis | None:
    waiting = (cs.get("state") or {}).get("waiting")
    if not waiting:
        return None
    reason = waiting.get("reason") or "ContainerWaiting"
    message = waiting.get("message") or ""
    config = _CONFIG.search(message)
    if config:
        return Diagnosis(CONFIG_NOT_FOUND, _hinted(CONFIG_NOT_FOUND, f"{config.group(0)} ({message})"))
    if reason in IMAGE_REASONS:
        image = cs.get("image") or "the image"
        return Diagnosis(reason, _hinted(reason, f"cannot pull {image}: {message or reason}"))
    if reason in START_REASONS:
        last = ((cs.get("lastState") or {}).get("terminated")) or {}
        detail = last.get("reason") or ""
        if last.get("exitCode") is not None:
            detail = f"{detail} (exit code {last['exitCode']})".strip()
        text = message or reason
        return Diagnosis(reason, _hinted(reason, f"{text}; last run: {detail}" if detail else text))
    if reason == "ContainerCreating" and message:
        return Diagnosis(reason, message)
    return None  # ContainerCreating without a message, PodInitializing: the normal way to Running


def _ended(pod: Mapping[str, Any], cs: Mapping[str, Any] | None) -> Diagnosis | None:
    st = pod.get("status") or {}
    if st.get("reason") == DEADLINE_EXCEEDED:
        return Diagnosis(DEADLINE_EXCEEDED, _hinted(DEADLINE_EXCEEDED, st.get("message") or DEADLINE_EXCEEDED), True)
    if st.get("reason") == EVICTED:
        return Diagnosis(EVICTED, _hinted(EVICTED, st.get("message") or EVICTED), True)
    term = ((cs or {}).get("state") or {}).get("terminated") or {}
    if term.get("reason") == OOM_KILLED:
        limit = _memory_limit(pod)
        what = f"the converter was OOM-killed (exit code {term.get('exitCode', 137)}"
        what += f", memory limit {limit})" if limit else ", no memory limit: the node ran out)"
        return Diagnosis(OOM_KILLED, _hinted(OOM_KILLED, what), True)
    return None


def _memory_limit(pod: Mapping[str, Any]) -> str | None:
    for c in (pod.get("spec") or {}).get("containers") or []:
        limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
        if limit:
            return str(limit)
    return None


def diagnose_pod(pod: Mapping[str, Any], container: str | None = None) -> Diagnosis | None:
    """The reason this Pod is not converting, or None when it is on its way or running normally."""
    if (pod.get("metadata") or {}).get("deletionTimestamp") and (pod.get("status") or {}).get("phase") != "Failed":
        return None  # being replaced or cleaned up: not news
    scheduling = _scheduling(pod)
    if scheduling:
        return scheduling
    cs = _container(pod, container)
    return _ended(pod, cs) or (_waiting(cs) if cs else None)


def diagnose(pods: Iterable[Mapping[str, Any]], container: str | None = None) -> Diagnosis | None:
    """The newest Pod's diagnosis: with retries, it is the one the Job is waiting on."""
    ordered = sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
    return diagnose_pod(ordered[-1], container) if ordered else None


def ended_reason(pods: Iterable[Mapping[str, Any]], container: str | None = None) -> Diagnosis | None:
    """The most telling end among a failed Job's Pods (OOM kill, deadline, eviction), newest first."""
    ordered = sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True)
    for pod in ordered:
        found = _ended(pod, _container(pod, container))
        if found:
            return found
    return None
