"""Serving that heals itself: observe every Triton endpoint, decide (``serving_plan``), act.

Triton runs with ``--model-control-mode=explicit``: a restarted replica loads
nothing, and a load through a Service reaches one Pod. So one loop in the
operator keeps every endpoint serving what the OptimizedModels say:

* it learns what should serve from every OptimizedModel event (kopf's watch,
  ``observe_model``), and where Triton runs from a watch on the EndpointSlices
  of ``EDGEOPT_TRITON_SERVICE`` in Triton's namespace (a Role there, nothing
  cluster-wide), or the bare ``tritonURL`` as one endpoint;
* it runs a round on every endpoint change, on every model change, and every
  ``EDGEOPT_SERVING_AUDIT_SECONDS``; a round that left something missing or an
  endpoint silent looks again within seconds;
* a round reads each endpoint's repository index, loads what is missing (at
  most ``EDGEOPT_SERVING_LOAD_PARALLELISM`` at once, in name order), sets the
  Pods' readiness gates, and writes one conflict-checked status patch per
  resource whose serving changed, with an Event on each transition.

Everything it knows is re-learnt after a restart (the initial listings), so it
is a cache, never the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from edgeopt.errors import ServingError, SpecError
from edgeopt.operator import serving_plan as plan
from edgeopt.operator.endpoints import SERVICE_NAME_LABEL, Endpoint, bare, from_slices, parse_service
from edgeopt.operator.kube import KubeError
from edgeopt.operator.plan import patch_status_checked, post_event
from edgeopt.operator.runtime import Runtime, model_from_body, triton_url
from edgeopt.operator.serving import wait_ready, with_versions
from edgeopt.triton.client import AsyncTritonClient, RetryPolicy

log = logging.getLogger(__name__)

#: An index read is one cheap GET: no retry inside a round, the next round is the retry.
_ONCE = RetryPolicy(attempts=1)
#: A Triton busy loading may drop a connection (its HTTP worker is held by the load): retry that briefly.
_LOADS = RetryPolicy(attempts=3, initial_delay=0.2)
#: Seconds before looking again when a round left something missing (an endpoint still starting).
QUICK_RETRY = 1.0
#: Seconds a peered operator counts as active after kopf's last timer call (standby replicas do nothing).
HEARTBEAT_SECONDS = 10.0
_WATCH_SECONDS = 300


class ServingReconciler:
    """One per operator process; ``memo.serving``."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        s = rt.settings
        self.service = parse_service(s.triton_service) if s.triton_service else None
        self.wants: dict[tuple[str, str], plan.Want] = {}
        self.bodies: dict[tuple[str, str], dict[str, Any]] = {}
        self.endpoints: tuple[Endpoint, ...] = ()
        self.listed = threading.Event()  # the Service's EndpointSlices were listed at least once
        self.heartbeat = 0.0
        self.rounds = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Future[Any]] = []
        self._slices: dict[str, Mapping[str, Any]] = {}
        self._stopping = False
        #: kopf's Event queue lives in context variables its handlers see and a startup task does not:
        #: Events are posted in the context of the first OptimizedModel event (they are all about one).
        self._events: contextvars.Context | None = None

    # ------------------------------------------------------------------ what should serve, and where

    def target(self, body: Mapping[str, Any]) -> tuple[str | None, bool]:
        """(url, via the Service) for a resource; (None, False) when it names no Triton it may use."""
        try:
            model = model_from_body(body)
        except SpecError:
            return None, False
        url = triton_url(self.rt, model)
        spec_url = (model.spec.serving.triton_url or "").rstrip("/")
        default = (self.rt.settings.triton_url or "").rstrip("/")
        return url, bool(self.service and url and (not spec_url or spec_url == default))

    def observe_model(self, event: str, body: Mapping[str, Any]) -> None:
        """Every OptimizedModel event (kopf's watch and initial listing): update the wants, wake the loop."""
        if self._events is None:
            self._events = contextvars.copy_context()
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        want = None
        if event != "DELETED" and (body.get("status") or {}).get("modelName"):
            url, via = self.target(body)
            want = plan.want_from_body(body, url, via_service=via)
        old = self.wants.get(key)
        if want is None:
            self.wants.pop(key, None)
            self.bodies.pop(key, None)
        else:
            self.wants[key] = want
            self.bodies[key] = {
                "apiVersion": body.get("apiVersion"),
                "kind": body.get("kind"),
                "metadata": dict(meta),
                "status": dict(body.get("status") or {}),
            }
        if old != want:
            self.kick()

    def endpoints_for(self, body: Mapping[str, Any]) -> list[Endpoint]:
        """Where a switch or an unload of this resource goes: every Service endpoint, or its one URL."""
        url, via = self.target(body)
        if via:
            if not self.listed.is_set():
                self._list_slices()
            return list(self.service_endpoints())
        return bare(url) if url else []

    def service_endpoints(self) -> tuple[Endpoint, ...]:
        """The Service's endpoints; with no EndpointSlice at all (no endpointslice controller), its URL.

        The controller writes a slice for every Service with a selector, empty when no Pod
        matches, so "no slice" means nobody maintains them: the Service URL is then one endpoint.
        """
        if not self._slices and self.rt.settings.triton_url:
            return tuple(bare(self.rt.settings.triton_url))
        return self.endpoints

    # ------------------------------------------------------------------ the loop

    def kick(self) -> None:
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def active(self) -> bool:
        """Standalone, or the active peer (kopf calls the heartbeat timer only there), or nothing to serve.

        With no OptimizedModel there is no timer to beat, and a Triton Pod's gate must still turn True.
        """
        if self.rt.settings.peering_name is None or not self.wants:
            return True
        return time.monotonic() - self.heartbeat < 3 * HEARTBEAT_SECONDS

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._tasks.append(asyncio.ensure_future(self.run()))
        if self.service:  # a daemon thread: a blocking watch must not hold up the operator's exit
            threading.Thread(target=self._watch_slices, name="triton-endpointslices", daemon=True).start()

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()

    async def run(self) -> None:
        assert self._wake is not None
        delay = 0.0
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            await asyncio.sleep(0.2)  # let a burst of events (a rollout, a listing) arrive first
            self._wake.clear()
            delay = self.rt.settings.serving_audit_seconds
            if not self.active():
                continue
            try:
                if await self.round():
                    delay = QUICK_RETRY
            except Exception:  # never let the loop die; the next round tries again
                log.exception("serving reconcile round failed")
                delay = QUICK_RETRY * 5

    async def round(self) -> bool:
        """One observe → decide → act pass; True when something is still missing (look again soon)."""
        self.rounds += 1
        snap, pods = await self.observe()
        loads = plan.decide_loads(snap)
        results = await self.load_all(loads)
        snap = plan.after_loads(snap, results)
        gates_failed = await self.set_gates(plan.decide_gates(snap), pods)
        await self.write_statuses(snap)
        return plan.needs_retry(snap) or gates_failed

    # ------------------------------------------------------------------ observe

    async def observe(self) -> tuple[plan.Snapshot, dict[str, tuple[int | None, str]]]:
        wants = tuple(self.wants.values())
        if self.service and not self.listed.is_set():
            await asyncio.to_thread(self._list_slices)
        service = self.service_endpoints() if self.service else ()
        where = {e.url: e for e in service}
        for w in wants:
            if w.url is not None:
                where.setdefault(w.url.rstrip("/"), bare(w.url)[0])
        found = await asyncio.gather(*(self.observe_endpoint(e) for e in where.values()))
        observed = {obs.endpoint.url: obs for obs, _ in found}
        pods = {obs.endpoint.url: pod for obs, pod in found if pod is not None}
        return plan.Snapshot(wants, tuple(service), observed), pods

    async def observe_endpoint(self, ep: Endpoint) -> tuple[plan.Observed, tuple[int | None, str] | None]:
        """Triton's index, and the Pod's gate: (observation, (gate's index in conditions, resourceVersion))."""
        pod_info: dict[str, Any] = {}
        ref: tuple[int | None, str] | None = None
        if self.rt.settings.triton_readiness_gate and ep.pod and ep.namespace:
            pod_info, ref = await asyncio.to_thread(self._gate_of, ep.namespace, ep.pod)
        triton = AsyncTritonClient(ep.url, timeout=min(self.rt.settings.triton_timeout_seconds, 5.0), retry=_ONCE)
        try:
            index = await triton.repository_index()
        except ServingError as exc:
            return plan.Observed(ep, None, error=str(exc), **pod_info), ref
        return plan.from_index(ep, index, **pod_info), ref

    def _gate_of(self, namespace: str, name: str) -> tuple[dict[str, Any], tuple[int | None, str] | None]:
        try:
            pod = self.rt.kube.read_pod(namespace, name)
        except KubeError as exc:
            log.warning("could not read Triton Pod %s/%s: %s", namespace, name, exc)
            return {}, None
        if pod is None:
            return {}, None
        gates = (pod.get("spec") or {}).get("readinessGates") or []
        gated = any(g.get("conditionType") == plan.READINESS_GATE for g in gates)
        conds = (pod.get("status") or {}).get("conditions")
        index = next((i for i, c in enumerate(conds or []) if c.get("type") == plan.READINESS_GATE), None)
        gate = conds[index].get("status") if conds and index is not None else None
        where = -1 if conds is None else index  # -1: no conditions list to append to yet
        return {"gated": gated, "gate": gate}, (where, str(pod["metadata"].get("resourceVersion") or ""))

    # ------------------------------------------------------------------ act

    def _client(self, url: str) -> AsyncTritonClient:
        timeout = self.rt.settings.triton_timeout_seconds
        return AsyncTritonClient(url, timeout=timeout, load_timeout=max(timeout, 120.0), retry=_LOADS)

    async def load_all(self, loads: Sequence[plan.Load]) -> list[tuple[plan.Load, str | None]]:
        """Each load in the plan's order, at most serving_load_parallelism at once."""
        gate = asyncio.Semaphore(self.rt.settings.serving_load_parallelism)

        async def one(load: plan.Load) -> tuple[plan.Load, str | None]:
            async with gate:
                return load, await self.heal(load)

        return list(await asyncio.gather(*(one(load) for load in loads)))

    async def heal(self, load: plan.Load) -> str | None:
        """Load the versions ``load.want`` serves into one endpoint; None when they are ready there."""
        want, triton = load.want, self._client(load.endpoint.url)
        versions = list(want.versions)
        started = time.monotonic()
        try:
            config = None
            if load.peer is not None:
                with contextlib.suppress(ServingError):
                    config = await self._client(load.peer.url).model_config(want.model)
            if config is not None:
                await triton.load(want.model, config=with_versions(config, versions))
            else:  # no replica serves it: the repository's config, narrowed to the served versions
                await triton.load(want.model)
                if set(await triton.ready_versions(want.model)) != set(versions):
                    await triton.load(want.model, config=with_versions(await triton.model_config(want.model), versions))
            for v in versions:
                await wait_ready(triton, want.model, v, self.rt.settings.triton_timeout_seconds)
        except ServingError as exc:
            log.warning("could not load %s into %s: %s", want.model, load.endpoint.name, exc)
            return str(exc)
        took = time.monotonic() - started
        message = (
            f"loaded version {', '.join(map(str, versions))} of {want.model} into Triton "
            f"{load.endpoint.name} ({load.endpoint.url}), which lacked it, in {took:.2f}s"
        )
        body = self.bodies.get(want.key)
        if body:
            self.post(body, plan.RELOADED, message)
        return None

    def post(self, body: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        """An Event on the resource, through kopf's queue (see ``_events``)."""
        if self._events is None:
            log.info(
                "%s/%s: %s: %s",
                (body.get("metadata") or {}).get("namespace"),
                (body.get("metadata") or {}).get("name"),
                reason,
                message,
            )
            return
        self._events.run(post_event, body, reason, message, warning=warning)

    async def set_gates(self, patches: Sequence[plan.GatePatch], pods: Mapping[str, tuple[int | None, str]]) -> bool:
        """Patch each gate onto the Pod version observed; True when one failed (look again soon)."""
        by_pod = {e.pod: e.url for e in self.endpoints if e.pod}
        failed = False
        for p in patches:
            ref = pods.get(by_pod.get(p.pod, ""))
            if ref is None:
                failed = True
                continue
            cond = {
                "type": plan.READINESS_GATE,
                "status": p.status,
                "reason": p.reason,
                "message": p.message,
                "lastProbeTime": None,
                "lastTransitionTime": _now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            try:
                await asyncio.to_thread(
                    self.rt.kube.patch_pod_condition, p.namespace, p.pod, cond, index=ref[0], resource_version=ref[1]
                )
                log.info("readiness gate of Pod %s/%s: %s (%s)", p.namespace, p.pod, p.status, p.message)
            except KubeError as exc:  # a kubelet write in between: the next round reads it again
                log.info("could not set the readiness gate of Pod %s/%s: %s", p.namespace, p.pod, exc)
                failed = True
        return failed

    async def write_statuses(self, snap: plan.Snapshot) -> None:
        now = _now()
        for want in sorted(snap.wants, key=lambda w: w.key):
            body = self.bodies.get(want.key)
            if body is not None:
                await self._write_status(body, want, plan.decide_serving(snap, want), now)

    async def _write_status(self, body: Mapping[str, Any], want: plan.Want, served: plan.Served, now: Any) -> None:
        """One conflict-checked patch (decided again on a fresh read after a conflict), then its Event."""
        audit = self.rt.settings.serving_audit_seconds
        decided: list[plan.ServingDecision] = []

        def decide(b: Mapping[str, Any]) -> dict[str, Any] | None:
            d = plan.serving_patch(b.get("status"), want, served, now, audit)
            decided[:] = [d] if d else []
            return d.patch if d else None

        try:
            done = await asyncio.to_thread(patch_status_checked, self.rt, body, decide)
        except KubeError as exc:
            log.warning("could not record serving of %s/%s: %s", *want.key, exc)
            return
        if done is not None and decided and decided[0].event:
            reason, message, warning = decided[0].event
            self.post(done, reason, message, warning=warning)

    # ------------------------------------------------------------------ the EndpointSlice watch

    def _selector(self) -> str:
        assert self.service is not None
        return f"{SERVICE_NAME_LABEL}={self.service[1]}"

    def _list_slices(self) -> str:
        assert self.service is not None
        listing = self.rt.kube.list_endpointslices(self.service[0], self._selector())
        self._slices = {s["metadata"]["name"]: s for s in listing.get("items") or []}
        self._set_endpoints()
        self.listed.set()
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    def _set_endpoints(self) -> None:
        endpoints = tuple(from_slices(self._slices.values()))
        if endpoints != self.endpoints:
            self.endpoints = endpoints
            self.kick()

    def _watch_slices(self) -> None:
        """List, then watch (in a thread); any trouble: list again after a pause. Runs until the process ends."""
        assert self.service is not None
        while not self._stopping:
            try:
                version = self._list_slices()
                for event in self.rt.kube.watch_endpointslices(
                    self.service[0], self._selector(), version, _WATCH_SECONDS
                ):
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        break  # e.g. 410 Gone: list again
                    name = str((obj.get("metadata") or {}).get("name") or "")
                    if event.get("type") == "DELETED":
                        self._slices.pop(name, None)
                    elif name:
                        self._slices[name] = obj
                    self._set_endpoints()
            except KubeError as exc:
                log.warning("EndpointSlices of Triton's Service: %s; listing again in 5s", exc)
                time.sleep(5)
            except Exception:  # never stop following the replicas; the audit still runs meanwhile
                log.exception("watching the EndpointSlices of Triton's Service failed; listing again in 5s")
                time.sleep(5)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
