"""Publishing → Ready: have every Triton replica serve the published version, with no request dropped.

Triton runs in explicit model-control mode, so nothing changes until the
operator asks, and a load through a Service reaches one Pod: a switch goes
to every endpoint (``serving_reconcile.ServingReconciler.endpoints_for``),
replica by replica, each serving the old version until its new one is ready.
A replica that is not ready and does not answer yet is skipped; the serving
reconcile loads it when it starts. On one replica a switch is three loads, each of which Triton performs while it
keeps answering with what it has (a reload replaces the model only once the
new one is ready, and a failed reload leaves the old one serving):

1. ``load(name)``: the repository's config.pbtxt, which the publisher wrote
   with ``version_policy: specific`` on the new version plus the served ones
   published with the same config. An incompatible config (other inputs,
   dtypes, backend) lists only the new version, so it never applies to the
   old one, which Triton keeps serving until the new one is ready.
2. Wait until the new version is ready and answers one smoke inference.
3. Drop the others: a load with the loaded config, version_policy narrowed to
   the new version (an API-side override; no file is touched).

A rollback (``spec.target.version`` set to a version in ``status.history``)
loads that version (already on disk) beside the served one with the loaded
config, then narrows the same way: no Job. A version that fails its smoke
test is never left serving: what served before is loaded back.

Failures are classified: ``TritonUnavailable`` (no answer: retried with
backoff for as long as it takes, which is normal at the edge), ``LoadFailed``
(Triton refused, with its message) and ``SmokeTestFailed`` (loaded but the
zero-input request failed); the last two give up to Failed after
``serving_max_attempts`` (``decide_failure``, a pure decision). A conversion
Job is never re-run for any of them. Every status write is the conflict-checked
``patch_status_checked``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kopf

from edgeopt.errors import ServingError, SpecError
from edgeopt.operator import status, tenancy
from edgeopt.operator.endpoints import Endpoint
from edgeopt.operator.plan import patch_status_checked, post_event
from edgeopt.operator.runtime import Runtime, model_from_body, triton_url
from edgeopt.triton.client import (
    SMOKE_INPUT_MAX_BYTES,
    AsyncTritonClient,
    RetryPolicy,
    SmokeInputTooLarge,
    TritonRefused,
    TritonUnavailable,
)

#: The operator retries with its own backoff (status shows each failure); keep the client's retries short.
_RETRY = RetryPolicy(attempts=2, initial_delay=0.5)
ROLLED_BACK = status.ROLLED_BACK
SMOKE_TEST_FAILED = "SmokeTestFailed"


class SmokeTestFailed(ServingError):
    """The version loaded but did not answer a zero-input request with finite numbers."""

    reason = SMOKE_TEST_FAILED


@dataclass(frozen=True)
class Switch:
    """What a switch did: how long until only ``version`` served, and what it dropped."""

    version: int | None
    seconds: float
    dropped: tuple[int, ...]
    smoke: str  # what the smoke request showed, for the status message


def with_versions(config: Mapping[str, Any], versions: list[int]) -> dict[str, Any]:
    """A loaded config (Triton's JSON form) with version_policy set to exactly ``versions``."""
    changed = dict(config)
    changed["version_policy"] = {"specific": {"versions": sorted({int(v) for v in versions})}}
    return changed


def only_version(config: Mapping[str, Any], version: int) -> dict[str, Any]:
    """The loaded config narrowed to one version: the last step of a switch."""
    return with_versions(config, [version])


def failure_reason(exc: ServingError) -> tuple[str, bool]:
    """(condition reason, counts toward serving_max_attempts). Unreachable Triton never gives up."""
    if isinstance(exc, TritonUnavailable):
        return "TritonUnavailable", False
    if isinstance(exc, SmokeTestFailed):
        return SMOKE_TEST_FAILED, True
    if isinstance(exc, TritonRefused):
        return "LoadFailed", True
    return exc.reason or "ServingFailed", True


def backoff(base: float, attempt: int) -> float:
    return float(min(base * (2 ** min(attempt, 4)), base * 10))


async def wait_ready(triton: AsyncTritonClient, name: str, version: int | None, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await triton.is_model_ready(name, version):
        if asyncio.get_running_loop().time() > deadline:
            raise TritonRefused(f"{name} version {version} is not ready in Triton at {triton.url} after {timeout:g}s")
        await asyncio.sleep(0.2)


async def switch_to(
    triton: AsyncTritonClient,
    name: str,
    version: int | None,
    *,
    timeout: float,
    from_repository: bool = True,
    max_bytes: int = SMOKE_INPUT_MAX_BYTES,
) -> Switch:
    """Serve ``version`` of ``name``, then only it; Triton answers throughout.

    ``from_repository``: (re)read config.pbtxt first (a new publish); a
    rollback loads the kept version beside the served one with the loaded
    config instead. If the new version fails its smoke test, what Triton
    served before is loaded back (its own config, as Triton reported it).
    """
    started = time.monotonic()
    before = await triton.ready_versions(name)
    previous = await triton.model_config(name) if before else None
    if from_repository or not before:
        await triton.load(name)
    if version is not None and not await triton.is_model_ready(name, version):
        loaded = await triton.model_config(name)
        await triton.load(name, config=with_versions(loaded, [*before, int(version)]))
    await wait_ready(triton, name, version, timeout)
    try:
        smoke = await triton.smoke_infer(name, version, max_bytes=max_bytes)
        answered = f"answered a request in {smoke.latency_ms:.1f} ms"
    except SmokeInputTooLarge as exc:  # the config asks for more than the cap: ready, but no request sent
        answered = f"is ready; no smoke request was sent: {exc}"
    except TritonUnavailable:
        raise
    except ServingError as exc:
        if previous is not None:  # put back what served before; the new version is not served
            await triton.load(name, config=with_versions(previous, before))
        raise SmokeTestFailed(f"{name} version {version} loaded but failed its smoke inference: {exc}") from exc
    others: tuple[int, ...] = ()
    if version is not None:
        others = tuple(v for v in await triton.ready_versions(name) if v != int(version))
        if others:
            await triton.load(name, config=only_version(await triton.model_config(name), int(version)))
    dropped = tuple(sorted({*before, *others} - {version}))
    return Switch(version, time.monotonic() - started, dropped, answered)


def _client(rt: Runtime, url: str) -> AsyncTritonClient:
    timeout = rt.settings.triton_timeout_seconds
    return AsyncTritonClient(url, timeout=timeout, load_timeout=max(timeout, 120.0), retry=_RETRY)


async def switch_everywhere(
    rt: Runtime, endpoints: Sequence[Endpoint], name: str, version: int | None, *, from_repository: bool
) -> tuple[list[tuple[Endpoint, Switch]], list[Endpoint]]:
    """``switch_to`` on each endpoint in turn: replica by replica, each serving the old version until its new one is.

    An endpoint the EndpointSlice marks not ready that does not answer either (a replica still
    starting) is skipped: it serves no one, and the serving reconcile loads it when it is up.
    Returns (switched, skipped); raises the first endpoint's failure (a retry switches again, idempotently).
    """
    switched: list[tuple[Endpoint, Switch]] = []
    skipped: list[Endpoint] = []
    for ep in endpoints:
        triton = _client(rt, ep.url)
        if not ep.ready and not await triton.is_live():
            skipped.append(ep)
            continue
        done = await switch_to(
            triton,
            name,
            version,
            timeout=rt.settings.triton_timeout_seconds,
            from_repository=from_repository,
            max_bytes=rt.settings.smoke_input_max_bytes,
        )
        switched.append((ep, done))
    if not switched:
        where = ", ".join(e.name for e in skipped) or "the Triton Service has no endpoints"
        raise TritonUnavailable(f"no Triton endpoint answers ({where})")
    return switched, skipped


def switched_message(
    name: str, version: int | None, switched: Sequence[tuple[Endpoint, Switch]], skipped: Sequence[Endpoint]
) -> str:
    where = ", ".join(ep.name for ep, _ in switched)
    seconds = sum(d.seconds for _, d in switched)
    dropped = sorted({v for _, d in switched for v in d.dropped})
    message = (
        f"version {version} of {name} is served by Triton at {where} (switched in {seconds:.2f}s, "
        f"{switched[-1][1].smoke}{'; version ' + ', '.join(map(str, dropped)) + ' unloaded' if dropped else ''})"
    )
    if skipped:
        message += f"; {', '.join(e.name for e in skipped)} not answering yet: loaded when it starts"
    return message


def served_patch(
    st: Mapping[str, Any] | None, gen: int, version: int | None, message: str, endpoints: int, ready: int
) -> dict[str, Any] | None:
    """Ready after a switch, with ``status.serving``; None when the status moved on (a newer spec)."""
    st = st or {}
    if st.get("phase") != status.PUBLISHING or st.get("observedGeneration") != gen:
        return None
    serving = {"endpoints": endpoints, "ready": ready, "version": version, "notServedSince": None}
    return {**status.serving_ready(st, gen, message, versions=[version] if version else []), "serving": serving}


@dataclass(frozen=True)
class Failure:
    """What a failed switch means: a status patch (None: nothing new to say), an Event, and a retry delay."""

    patch: dict[str, Any] | None
    event: tuple[str, str] | None  # (reason, message), a Warning
    retry_in: float | None  # None: gave up (Failed)


def decide_failure(
    st: Mapping[str, Any] | None, gen: int, exc: ServingError, *, limit: int, retry: int, backoff_base: float
) -> Failure:
    """Retry (TritonUnavailable for ever, the bounded kinds up to ``limit`` attempts) or give up to Failed."""
    st = st or {}
    reason, bounded = failure_reason(exc)
    attempts = int(st.get("servingAttempts") or 0) + 1 if bounded else 0
    if bounded and attempts >= limit:
        patch = status.serving_failed(st, gen, reason, f"{exc} (gave up after {attempts} attempts)")
        return Failure(patch, (reason, f"{exc}; gave up after {attempts} attempts"), None)
    detail = f"{exc} (attempt {attempts} of {limit}; retrying)" if bounded else str(exc)
    new = {**status.serving_unavailable(st, gen, reason, detail), "servingAttempts": attempts}
    changed = status.changed(st, {k: v for k, v in new.items() if k != "servingAttempts"}) or bounded
    new_reason = (status.condition(st, status.SERVING_READY) or {}).get("reason") != reason
    event = (reason, str(exc)) if changed and new_reason else None
    return Failure(new if changed else None, event, backoff(backoff_base, retry))


async def load_published(rt: Runtime, body: Mapping[str, Any], endpoints: Sequence[Endpoint], *, retry: int) -> None:
    """Switch every endpoint to status.modelVersion; one conflict-checked status patch. kopf.TemporaryError retries."""
    meta, st = body["metadata"], dict(body.get("status") or {})
    gen = int(meta["generation"])
    try:
        model = model_from_body(body)
    except SpecError:
        return
    version, name = st.get("modelVersion"), st.get("modelName") or model.model_name
    if not triton_url(rt, model):
        return
    rollback = (status.condition(st, status.PUBLISHED) or {}).get("reason") == ROLLED_BACK
    try:
        switched, skipped = await switch_everywhere(rt, endpoints, name, version, from_repository=not rollback)
    except ServingError as exc:
        await _failed(rt, body, gen, exc, retry=retry, where=f"Triton is not serving {name}")
        return
    message = switched_message(name, version, switched, skipped)
    n = len(switched) + len(skipped)

    def decide(b: Mapping[str, Any]) -> dict[str, Any] | None:
        return served_patch(b.get("status"), gen, version, message, n, len(switched))

    done = await asyncio.to_thread(patch_status_checked, rt, body, decide)
    if done is not None:
        post_event(done, reason=ROLLED_BACK if rollback else "Ready", message=message)


async def _failed(rt: Runtime, body: Mapping[str, Any], gen: int, exc: ServingError, *, retry: int, where: str) -> None:
    s = rt.settings
    decided: list[Failure] = []

    def decide(b: Mapping[str, Any]) -> dict[str, Any] | None:
        fresh = b.get("status") or {}
        if fresh.get("phase") != status.PUBLISHING or fresh.get("observedGeneration") != gen:
            return None
        f = decide_failure(
            fresh, gen, exc, limit=s.serving_max_attempts, retry=retry, backoff_base=s.serving_backoff_seconds
        )
        decided[:] = [f]
        return f.patch

    done = await asyncio.to_thread(patch_status_checked, rt, body, decide)
    failure = decided[0] if decided else None
    if done is not None and failure is not None and failure.event:
        post_event(done, warning=True, reason=failure.event[0], message=failure.event[1])
    if failure is not None and failure.retry_in is not None:
        raise kopf.TemporaryError(f"{where}: {exc}", delay=failure.retry_in) from exc


async def unload(
    rt: Runtime,
    body: Mapping[str, Any],
    endpoints: Sequence[Endpoint],
    logger: logging.Logger,
    publishers: Mapping[str, Iterable[Any]],
) -> None:
    """Unload from every endpoint on delete; failures are logged and an Event posted, never blocking.

    ``publishers``: kopf's index (handlers.publishers), published model name -> its publishers.
    """
    st = body.get("status") or {}
    try:
        model = model_from_body(body)
    except SpecError:
        return
    name = st.get("modelName") or model.model_name
    if not endpoints or not st.get("modelVersion"):
        return
    other = tenancy.other_publisher(publishers.get(name, ()), body, name)
    if other:
        message = f"not unloading {name} from Triton: it is published by OptimizedModel {other}"
        logger.warning(message)
        post_event(dict(body), warning=True, reason="UnloadRefused", message=message)
        return
    done, failed = [], []
    for ep in endpoints:
        try:
            await AsyncTritonClient(ep.url, timeout=rt.settings.triton_timeout_seconds, retry=_RETRY).unload(name)
            done.append(ep.name)
        except ServingError as exc:
            logger.warning("could not unload %s from %s: %s", name, ep.url, exc)
            failed.append(f"{ep.name}: {exc}")
    if done:
        post_event(dict(body), reason="Unloaded", message=f"unloaded {name} from Triton at {', '.join(done)}")
    if failed:
        message = f"could not unload {name} from Triton: {'; '.join(failed)}"
        post_event(dict(body), warning=True, reason="UnloadFailed", message=message)
