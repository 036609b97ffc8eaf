"""Publishing → Ready: have Triton serve the published version, with no request dropped.

Triton runs in explicit model-control mode, so nothing changes until the
operator asks. A switch is three loads, each of which Triton performs while it
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
``serving_max_attempts``. A conversion Job is never re-run for any of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from edgeopt.errors import ServingError, SpecError
from edgeopt.operator import status, tenancy
from edgeopt.operator.plan import post_event
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


async def _wait_ready(triton: AsyncTritonClient, name: str, version: int | None, timeout: float) -> None:
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
    await _wait_ready(triton, name, version, timeout)
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


async def load_published(rt: Runtime, body: Mapping[str, Any], patch: Any, *, retry: int) -> None:
    """Switch Triton to status.modelVersion; patch status either way. Raises kopf.TemporaryError to retry."""
    meta = body["metadata"]
    st = dict(body.get("status") or {})
    gen = int(meta["generation"])
    owner = dict(body)
    try:
        model = model_from_body(body)
    except SpecError:
        return
    url = triton_url(rt, model)
    version = st.get("modelVersion")
    name = st.get("modelName") or model.model_name
    if not url:
        return
    timeout = rt.settings.triton_timeout_seconds
    rollback = (status.condition(st, status.PUBLISHED) or {}).get("reason") == ROLLED_BACK
    triton = AsyncTritonClient(url, timeout=timeout, load_timeout=max(timeout, 120.0), retry=_RETRY)
    try:
        done = await switch_to(
            triton, name, version, timeout=timeout, from_repository=not rollback,
            max_bytes=rt.settings.smoke_input_max_bytes,
        )  # fmt: skip
    except ServingError as exc:
        _serving_failed(rt, st, gen, owner, patch, exc, retry=retry, where=f"Triton at {url} is not serving {name}")
        return
    dropped = f"; version {', '.join(map(str, done.dropped))} unloaded" if done.dropped else ""
    message = (
        f"version {version} of {name} is served by Triton at {url} (switched in {done.seconds:.2f}s, "
        f"{done.smoke}{dropped})"
    )
    patch.status.update(status.serving_ready(st, gen, message, versions=[version] if version else []))
    post_event(owner, reason=ROLLED_BACK if rollback else "Ready", message=message)


def _serving_failed(
    rt: Runtime,
    st: dict[str, Any],
    gen: int,
    owner: dict[str, Any],
    patch: Any,
    exc: ServingError,
    *,
    retry: int,
    where: str,
) -> None:
    """Record the failure; retry (TemporaryError) unless a bounded kind ran out of attempts."""
    reason, bounded = failure_reason(exc)
    attempts = int(st.get("servingAttempts") or 0) + 1 if bounded else 0
    limit = rt.settings.serving_max_attempts
    if bounded and attempts >= limit:
        new = status.serving_failed(st, gen, reason, f"{exc} (gave up after {attempts} attempts)")
        patch.status.update(new)
        post_event(owner, warning=True, reason=reason, message=f"{exc}; gave up after {attempts} attempts")
        return
    detail = f"{exc} (attempt {attempts} of {limit}; retrying)" if bounded else str(exc)
    new = {**status.serving_unavailable(st, gen, reason, detail), "servingAttempts": attempts}
    if status.changed(st, {k: v for k, v in new.items() if k != "servingAttempts"}) or bounded:
        patch.status.update(new)
        if (status.condition(st, status.SERVING_READY) or {}).get("reason") != reason:
            post_event(owner, warning=True, reason=reason, message=str(exc))
    delay = backoff(rt.settings.serving_backoff_seconds, retry)
    raise kopf.TemporaryError(f"{where}: {exc}", delay=delay) from exc


async def unload(
    rt: Runtime, body: Mapping[str, Any], logger: logging.Logger, publishers: Mapping[str, Iterable[Any]]
) -> None:
    """Unload from Triton on delete; failures are logged and an Event posted, never blocking.

    ``publishers``: kopf's index (handlers.publishers), published model name -> its publishers.
    """
    st = body.get("status") or {}
    try:
        model = model_from_body(body)
    except SpecError:
        return
    url = triton_url(rt, model)
    name = st.get("modelName") or model.model_name
    if not url or not st.get("modelVersion"):
        return
    other = tenancy.other_publisher(publishers.get(name, ()), body, name)
    if other:
        message = f"not unloading {name} from Triton: it is published by OptimizedModel {other}"
        logger.warning(message)
        post_event(dict(body), warning=True, reason="UnloadRefused", message=message)
        return
    try:
        await AsyncTritonClient(url, timeout=rt.settings.triton_timeout_seconds, retry=_RETRY).unload(name)
        post_event(dict(body), reason="Unloaded", message=f"unloaded {name} from Triton at {url}")
    except ServingError as exc:
        logger.warning("could not unload %s from %s: %s", name, url, exc)
        post_event(
            dict(body), warning=True, reason="UnloadFailed", message=f"could not unload {name} from Triton: {exc}"
        )
