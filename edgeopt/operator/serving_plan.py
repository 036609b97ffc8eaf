"""Desired serving state → what to do: pure decisions for the serving reconcile.

A round of ``serving_reconcile`` observes (which OptimizedModels should serve
which versions, every Triton endpoint's ready models, the Pods' readiness
gates), then asks this module, then acts:

1. ``decide_loads``: every endpoint that lacks a version it should serve gets a
   load, in a stable order (model, then endpoint), with the config a healthy
   peer serves it with (the same config a switch leaves loaded).
2. ``after_loads``: the observation as the loads left it.
3. ``decide_gates``: a Pod's ``edgeopt.io/models-loaded`` gate is True once
   every model that should serve is loaded there, False when one is missing.
4. ``decide_serving`` + ``serving_patch``: one status patch per resource
   (``status.serving``; Ready False with ``NotServed`` once an endpoint has
   lacked the model for longer than the audit period; True again when healed)
   and one Event per transition.

No I/O and no clock: ``now`` is an argument, so every branch has a table test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edgeopt.operator import status
from edgeopt.operator.endpoints import Endpoint

READINESS_GATE = "edgeopt.io/models-loaded"
NOT_SERVED = "NotServed"
SERVED = "Served"
RELOADED = "Reloaded"
_TS = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Want:
    """One OptimizedModel that should serve: which Triton model, which versions, where."""

    namespace: str
    name: str
    model: str
    versions: tuple[int, ...]
    #: Publishing: a switch is under way and owns the loads; the reconcile only counts.
    switching: bool = False
    #: None: the configured Service's endpoints; else this one URL.
    url: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name


def want_from_body(body: Mapping[str, Any], url: str | None, *, via_service: bool) -> Want | None:
    """What ``body`` asks Triton to serve; None when nothing (no Triton, deleting, nothing served yet)."""
    meta = body.get("metadata") or {}
    st = body.get("status") or {}
    if meta.get("deletionTimestamp") or not (url or via_service) or not st.get("modelName"):
        return None
    served = [int(v) for v in st.get("servingVersions") or []]
    switching = st.get("phase") == status.PUBLISHING
    if not served and st.get("phase") == status.READY and st.get("modelVersion"):
        served = [int(st["modelVersion"])]
    if not served:
        return None
    return Want(
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
        str(st["modelName"]),
        tuple(sorted(set(served))),
        switching,
        None if via_service else url,
    )


@dataclass(frozen=True)
class Observed:
    """One endpoint as seen this round."""

    endpoint: Endpoint
    #: model -> its READY versions; None when Triton did not answer.
    ready: Mapping[str, tuple[int, ...]] | None
    #: model -> what Triton says about it (its index state and reason, or a failed load's message).
    words: Mapping[str, str] = field(default_factory=dict)
    error: str = ""  # why Triton did not answer
    gated: bool = False  # the Pod declares the readiness gate, so the operator sets it
    gate: str | None = None  # the gate condition's status on the Pod now ("True", "False", None)


def from_index(endpoint: Endpoint, index: Iterable[Mapping[str, Any]], **pod: Any) -> Observed:
    """Triton's repository index -> ready versions and Triton's own words per model."""
    ready: dict[str, list[int]] = {}
    words: dict[str, str] = {}
    for e in index:
        name, state, version = str(e.get("name") or ""), str(e.get("state") or ""), str(e.get("version") or "")
        if state == "READY" and version.isdigit():
            ready.setdefault(name, []).append(int(version))
        elif state:
            words[name] = f"{state}: {e['reason']}" if e.get("reason") else state
    return Observed(endpoint, {m: tuple(sorted(v)) for m, v in ready.items()}, words, **pod)


@dataclass(frozen=True)
class Snapshot:
    wants: tuple[Want, ...]
    #: The Service's endpoints (none when no Service is configured).
    service: tuple[Endpoint, ...]
    #: url -> the observation of every endpoint some want targets (and of every Service endpoint).
    observed: Mapping[str, Observed]


def targets(snap: Snapshot, want: Want) -> list[Observed]:
    if want.url is None:
        return [snap.observed[e.url] for e in snap.service if e.url in snap.observed]
    found = snap.observed.get(want.url.rstrip("/"))
    return [found] if found else []


def has_all(obs: Observed, want: Want) -> bool:
    return obs.ready is not None and set(want.versions) <= set(obs.ready.get(want.model, ()))


def satisfied(obs: Observed, want: Want) -> bool:
    """Served here: every version; during a switch, any version (the switch moves it replica by replica)."""
    if want.switching:
        return obs.ready is not None and (not want.versions or bool(obs.ready.get(want.model)))
    return has_all(obs, want)


@dataclass(frozen=True)
class Load:
    endpoint: Endpoint
    want: Want
    #: An endpoint serving exactly these versions: its loaded config is the one to load (None: the repository's).
    peer: Endpoint | None


def decide_loads(snap: Snapshot) -> list[Load]:
    """Every (model, endpoint) that lacks a version it should serve; sorted by model, then endpoint."""
    loads = []
    for want in sorted(snap.wants, key=lambda w: (w.model, w.key)):
        if want.switching:
            continue
        seen = targets(snap, want)
        peer = next((o.endpoint for o in seen if has_all(o, want)), None)
        for obs in seen:
            if obs.ready is not None and not has_all(obs, want):
                loads.append(Load(obs.endpoint, want, peer))
    return loads


def after_loads(snap: Snapshot, results: Sequence[tuple[Load, str | None]]) -> Snapshot:
    """The observation as the loads left it: (load, None) served its versions; (load, error) did not."""
    observed = dict(snap.observed)
    for load, error in results:
        obs = observed[load.endpoint.url]
        ready, words = dict(obs.ready or {}), dict(obs.words)
        if error is None:
            ready[load.want.model] = load.want.versions
            words.pop(load.want.model, None)
        else:
            words[load.want.model] = error
        observed[load.endpoint.url] = replace(obs, ready=ready, words=words)
    return replace(snap, observed=observed)


@dataclass(frozen=True)
class GatePatch:
    namespace: str
    pod: str
    status: str  # "True" | "False"
    reason: str
    message: str


def decide_gates(snap: Snapshot) -> list[GatePatch]:
    """The gate of each gated Service Pod: True when every model that should serve there is loaded."""
    patches = []
    via_service = [w for w in snap.wants if w.url is None]
    for ep in snap.service:
        obs = snap.observed.get(ep.url)
        if obs is None or not obs.gated or ep.pod is None:
            continue
        if obs.ready is None:
            new, reason, message = "False", "TritonUnavailable", obs.error or "Triton did not answer"
        else:
            missing = sorted({w.model for w in via_service if not satisfied(obs, w)})
            new, reason = ("False", "ModelsMissing") if missing else ("True", "ModelsLoaded")
            message = (
                f"not loaded: {', '.join(missing)}"[: status.MESSAGE_LIMIT]
                if missing
                else (f"all {len({w.model for w in via_service})} models that should serve are loaded")
            )
        if obs.gate != new:
            patches.append(GatePatch(ep.namespace or "", ep.pod, new, reason, message))
    return patches


@dataclass(frozen=True)
class Served:
    """How one resource is served this round."""

    endpoints: int
    ready: int
    version: int | None
    #: (endpoint name, url, Triton's words) of every endpoint that lacks it.
    missing: tuple[tuple[str, str, str], ...] = ()

    @property
    def complete(self) -> bool:
        return self.endpoints > 0 and self.ready == self.endpoints


def decide_serving(snap: Snapshot, want: Want) -> Served:
    seen = targets(snap, want)
    missing = []
    for obs in seen:
        if not satisfied(obs, want):
            words = obs.error if obs.ready is None else obs.words.get(want.model) or "not loaded"
            missing.append((obs.endpoint.name, obs.endpoint.url, words))
    expected = len(snap.service) if want.url is None else 1
    return Served(expected, len(seen) - len(missing), max(want.versions) if want.versions else None, tuple(missing))


def _not_served_message(want: Want, served: Served) -> str:
    if served.endpoints == 0:
        return f"{want.model} is not served: the Triton Service has no endpoints"
    where = "; ".join(f"{name} ({url}): {words}" for name, url, words in served.missing)
    return (
        f"version {served.version} of {want.model} is not served by {served.endpoints - served.ready} of "
        f"{served.endpoints} Triton endpoints: {where}"
    )


@dataclass(frozen=True)
class ServingDecision:
    patch: dict[str, Any]
    event: tuple[str, str, bool] | None  # (reason, message, warning)


def _block(old: Mapping[str, Any], served: Served, now: dt.datetime) -> dict[str, Any]:
    since = None if served.complete else old.get("notServedSince") or now.strftime(_TS)
    block: dict[str, Any] = {"endpoints": served.endpoints, "ready": served.ready, "version": served.version}
    if since:
        block["notServedSince"] = since
    return block


def serving_patch(
    st: Mapping[str, Any] | None, want: Want, served: Served, now: dt.datetime, audit_seconds: float
) -> ServingDecision | None:
    """status.serving, and Ready False/True on a NotServed transition; None when nothing changes."""
    st = st or {}
    old = dict(st.get("serving") or {})
    block = _block(old, served, now)
    patch: dict[str, Any] = {}
    if block != old:
        patch["serving"] = {**block, **({"notServedSince": None} if "notServedSince" not in block else {})}
    event = None
    ready = status.condition(st, status.READY_CONDITION) or {}
    if st.get("phase") == status.READY and not want.switching:
        gen = int(st.get("observedGeneration") or 0)
        since = block.get("notServedSince")
        overdue = since and (now - dt.datetime.strptime(since, _TS).replace(tzinfo=now.tzinfo)).total_seconds() >= (
            audit_seconds
        )
        if overdue:
            message = _not_served_message(want, served)
            conds = [status.Condition(c, "False", NOT_SERVED, message) for c in (status.SERVING_READY, "Ready")]
            if ready.get("reason") != NOT_SERVED or ready.get("message") != message[: status.MESSAGE_LIMIT]:
                patch["conditions"] = status.merge_conditions(st.get("conditions"), conds, generation=gen)
            if ready.get("reason") != NOT_SERVED:
                event = (NOT_SERVED, message, True)
        elif served.complete and ready.get("reason") == NOT_SERVED:
            message = f"version {served.version} of {want.model} is served by all {served.endpoints} Triton endpoints"
            conds = [
                status.Condition(status.SERVING_READY, "True", "Loaded", message),
                status.Condition(status.READY_CONDITION, "True", "Serving", message),
            ]
            patch["conditions"] = status.merge_conditions(st.get("conditions"), conds, generation=gen)
            event = (SERVED, f"{message} again", False)
    return ServingDecision(patch, event) if patch else None


def needs_retry(snap: Snapshot) -> bool:
    """An endpoint did not answer or still lacks a model: look again soon, not at the next audit."""
    for want in snap.wants:
        if not decide_serving(snap, want).complete and not want.switching:
            return True
    return any(o.ready is None for o in snap.observed.values())
