"""Publishing → Ready: have Triton load the published version and prove it answers.

Triton runs in explicit model-control mode, so nothing is served until the
operator asks. Triton being down is normal at the edge (it restarts, the node
reboots): that is ServingReady=False and a retry with growing delay, never a
re-run of the conversion Job, whose result is already safely published.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from edgeopt.errors import ServingError, SpecError
from edgeopt.operator import status, tenancy
from edgeopt.operator.conversion import Runtime, model_from_body, post_event, triton_url
from edgeopt.operator.kube import KubeError
from edgeopt.triton.client import SMOKE_INPUT_MAX_BYTES, AsyncTritonClient, RetryPolicy, SmokeInputTooLarge

#: The operator retries with its own backoff (status shows each failure); keep the client's retries short.
_RETRY = RetryPolicy(attempts=2, initial_delay=0.5)


async def load_and_check(
    url: str, name: str, version: int | None, *, timeout: float, max_bytes: int = SMOKE_INPUT_MAX_BYTES
) -> str:
    """Load (explicit mode), wait until ``version`` is ready, run one inference on zeros.

    The zeros are shaped by the config the converter wrote; beyond ``max_bytes`` no request is sent.
    """
    triton = AsyncTritonClient(url, timeout=timeout, load_timeout=max(timeout, 120.0), retry=_RETRY)
    await triton.load(name)
    deadline = asyncio.get_running_loop().time() + timeout
    while not await triton.is_model_ready(name, version):
        if asyncio.get_running_loop().time() > deadline:
            raise ServingError(f"{name} version {version} is not ready in Triton at {url} after {timeout:g}s")
        await asyncio.sleep(0.5)
    try:
        smoke = await triton.smoke_infer(name, version, max_bytes=max_bytes)
    except SmokeInputTooLarge as exc:
        return f"is ready; no smoke request was sent: {exc}"
    return f"answered a request in {smoke.latency_ms:.1f} ms"


async def load_published(rt: Runtime, body: Mapping[str, Any], patch: Any, *, retry: int) -> None:
    """Load, wait ready, smoke-infer; patch status either way. Raises kopf.TemporaryError to retry."""
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
    try:
        answered = await load_and_check(
            url, name, version, timeout=timeout, max_bytes=rt.settings.smoke_input_max_bytes
        )
    except ServingError as exc:
        new = status.serving_unavailable(st, gen, "TritonUnavailable", str(exc))
        if status.changed(st, new):
            patch.status.update(new)
            post_event(owner, warning=True, reason="ServingNotReady", message=str(exc))
        delay = min(
            rt.settings.serving_backoff_seconds * (2 ** min(retry, 4)), rt.settings.serving_backoff_seconds * 10
        )
        raise kopf.TemporaryError(f"Triton at {url} is not serving {name} yet: {exc}", delay=delay) from exc
    message = f"version {version} of {name} is loaded in Triton at {url} and {answered}"
    patch.status.update(status.serving_ready(st, gen, message))
    post_event(owner, reason="Ready", message=message)


async def unload(rt: Runtime, body: Mapping[str, Any], logger: logging.Logger) -> None:
    """Unload from Triton on delete; failures are logged and an Event posted, never blocking."""
    st = body.get("status") or {}
    try:
        model = model_from_body(body)
    except SpecError:
        return
    url = triton_url(rt, model)
    name = st.get("modelName") or model.model_name
    if not url or not st.get("modelVersion"):
        return
    try:
        other = tenancy.other_publisher(await asyncio.to_thread(rt.kube.list_models), body, name)
    except KubeError as exc:
        other = f"(unknown: the OptimizedModels could not be listed: {exc})"
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
