"""The kubelet half of the node agent: run one Pod as an OCI container (podman, runc) and report it.

A :class:`PodRun` owns one Pod that kube-scheduler bound to the dev Node,
from Pending to Succeeded/Failed: it resolves
the Pod (podspec.py, podrun.py: image, env, volumes, securityContext),
starts its container with ``podman run`` and writes Pod status the way a
kubelet does: phase, conditions, ``containerStatuses[]`` with state,
lastState, restartCount, exitCode, reason, message and timestamps.  The
termination message file is read after exit (4096 bytes at most, like
kubelet).

* ``restartPolicy`` Always and OnFailure restart the container in place,
  with the kubelet's back-off (10 s doubling to 5 min; ``CrashLoopBackOff``
  while waiting), so a Deployment's Pod lives as on a node.
* httpGet, tcpSocket and exec probes run as a kubelet runs them, at the
  Pod's IP: readiness sets ContainersReady, and Ready once every
  ``readinessGates`` condition (set by others through pods/status, and kept)
  is True too (what a Deployment's availability, ``kubectl rollout status``
  and the EndpointSlices read); a failed liveness probe restarts the
  container, a startup probe holds the other two back.
* Deleting the Pod, its activeDeadlineSeconds, or the job controller (the
  Job's deadline) stops the container: SIGTERM, SIGKILL after the grace.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kubernetes.client.rest import ApiException

from edgeopt_dev.layout import Layout
from edgeopt_dev.node import NODE_IP
from edgeopt_dev.podnet import write_in_place
from edgeopt_dev.podrun import ContainerPlan, ContainerResult, Running, exec_in, prestop_sleep, resolve
from edgeopt_dev.podspec import CannotEmulate, NotYet, RuntimeContext

log = logging.getLogger("edgeopt.nodeagent")
RETRY_PENDING_SECONDS = 2.0
#: The kubelet's container restart back-off: 10 s, doubling, at most 5 min; reset after 10 min of running.
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 10.0, 300.0, 600.0


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_key(pod: dict[str, Any]) -> str:
    return f"{pod['metadata']['namespace']}_{pod['metadata']['name']}"


#: The Pod conditions a kubelet writes; any other (a readiness gate's, DisruptionTarget) is someone else's to keep.
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
State = tuple[bool, str, str]  # (status, reason, message)


def gates_state(spec: dict[str, Any], conditions: list[dict[str, Any]]) -> State:
    """The kubelet's Ready verdict once every container is ready: every readinessGates condition must be True."""
    by_type = {c.get("type"): c for c in conditions}
    unready = []
    for gate in spec.get("readinessGates") or []:
        cond = by_type.get(gate["conditionType"])
        if cond is None:
            unready.append(f'corresponding condition of pod readiness gate "{gate["conditionType"]}" does not exist.')
        elif cond.get("status") != "True":
            unready.append(
                f'the status of pod readiness gate "{gate["conditionType"]}" is not "True", '
                f'but {cond.get("status")}'
            )
    return (False, "ReadinessGatesNotReady", ", ".join(unready)) if unready else (True, "", "")


def kubelet_conditions(
    old: list[dict[str, Any]], spec: dict[str, Any], *, phase: str, containers_ready: bool
) -> list[dict[str, Any]]:
    """The Pod's conditions as a kubelet writes them: its own five recomputed, every other one kept as it was.

    Ready is ContainersReady and every readiness gate True (the kubelet's
    GeneratePodReadyCondition, its words); a condition whose status did not
    change keeps its lastTransitionTime.
    """
    container = spec["containers"][0]["name"]
    if phase in ("Succeeded", "Failed"):
        ended: State = (False, "PodCompleted" if phase == "Succeeded" else "PodFailed", "")
        containers, ready, started = ended, ended, False
    else:
        containers = (
            (True, "", "")
            if containers_ready
            else (False, "ContainersNotReady", f"containers with unready status: [{container}]")
        )
        ready = gates_state(spec, old) if containers_ready else containers
        started = True
    mine: dict[str, State] = {
        "PodReadyToStartContainers": (started, "", ""),
        "Initialized": (True, "", ""),
        "Ready": ready,
        "ContainersReady": containers,
        "PodScheduled": (True, "", ""),
    }
    stamp = now()
    before = {c.get("type"): c for c in old}
    made = {}
    for kind, (ok, reason, message) in mine.items():
        status = "True" if ok else "False"
        previous = before.get(kind) or {}
        kept = previous.get("status") == status and previous.get("lastTransitionTime")
        cond: dict[str, Any] = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": kept or stamp,
        }
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        made[kind] = cond
    # In place, in the order they had; the kubelet's missing ones after.
    return [made.get(str(c.get("type")), c) for c in old] + [c for kind, c in made.items() if kind not in before]


class PodRun:
    """One Pod, run to completion in a thread; ``on_done(self)`` is called at the end."""

    def __init__(
        self, pod: dict[str, Any], ctx: RuntimeContext, on_done: Callable[[PodRun], None], ip: str = ""
    ) -> None:
        self.pod = pod
        self.ip = ip  # the Pod's own address (podnet.PodIPs), for its life
        if ip:  # what the downward API's status.podIP and the Pod's /etc/hosts read
            pod.setdefault("status", {}).update(podIP=ip, podIPs=[{"ip": ip}])
        self.ctx = ctx
        self.on_done = on_done
        self.name = pod["metadata"]["name"]
        self.namespace = pod["metadata"]["namespace"]
        self.uid = pod["metadata"]["uid"]
        self.key = pod_key(pod)
        self.pod_dir = Layout(ctx.root).pod_dir(self.namespace, self.name)
        self.log_path = Layout(ctx.root).pod_log(self.namespace, self.name)
        self.container = pod["spec"]["containers"][0]["name"]
        self.phase = "Pending"
        self._stop = threading.Event()
        self._stop_reason = ""
        self._grace = 30.0
        self.restarts = 0
        self._attempt_started = 0.0
        self.last_state: dict[str, Any] = {}
        self._containers_ready = False
        self._recheck = threading.Event()  # a readiness gate changed: write Ready again
        self.thread = threading.Thread(target=self._main, name=f"pod-{self.key}", daemon=True)

    # -- control ---------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self, reason: str, grace: float | None = None) -> None:
        """Ask the process to end (deletion, deadline, shutdown); idempotent."""
        if not self._stop.is_set():
            self._stop_reason = reason
            if grace is not None:
                self._grace = grace
            self._stop.set()

    @property
    def done(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    def observe(self, pod: dict[str, Any]) -> None:
        """The Pod as the API has it now: when someone else's condition (a readiness gate) changes Ready, rewrite it."""
        if self.phase != "Running" or not self._containers_ready:
            return
        conditions = (pod.get("status") or {}).get("conditions") or []
        want = "True" if gates_state(pod["spec"], conditions)[0] else "False"
        if want not in [c.get("status") for c in conditions if c.get("type") == "Ready"]:
            self._recheck.set()

    def update_hosts(self) -> None:
        """Service endpoints changed: rewrite the running container's /etc/hosts (podnet.py)."""
        path = self.pod_dir / "hosts"
        if self.ctx.services is not None and path.exists():
            write_in_place(path, self.ctx.services.hosts(self.namespace, self.name[:63], self.ip))

    # -- status ----------------------------------------------------------------------------
    def _write_status(self, mutate: Callable[[dict[str, Any]], None]) -> bool:
        """Read-modify-replace the Pod status; False when the Pod is gone."""
        for _ in range(10):
            try:
                resp = self.ctx.core.read_namespaced_pod(self.name, self.namespace, _preload_content=False)
                pod = json.loads(resp.data)
                if pod["metadata"]["uid"] != self.uid:
                    return False
                status = pod.setdefault("status", {})
                mutate(status)
                self.ctx.core.replace_namespaced_pod_status(self.name, self.namespace, pod)
                return True
            except ApiException as exc:
                if exc.status == 404:
                    return False
                if exc.status != 409:
                    log.warning("pod %s: status update failed: %s", self.key, exc.reason)
                    time.sleep(0.5)
        return False

    def _ips(self, status: dict[str, Any]) -> None:
        """The node's address, and the Pod's own (podnet.py)."""
        status.update(hostIP=NODE_IP, hostIPs=[{"ip": NODE_IP}])
        if self.ip:
            status.update(podIP=self.ip, podIPs=[{"ip": self.ip}])

    def _container_status(
        self, state: dict[str, Any], *, ready: bool = False, started: bool | None = None
    ) -> list[dict[str, Any]]:
        c = self.pod["spec"]["containers"][0]
        status = {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "ready": ready,
            "started": "running" in state if started is None else started,
            "restartCount": self.restarts,
            "state": state,
            "lastState": self.last_state,
        }
        return [status]

    def _pending(self, reason: str, message: str) -> None:
        def mutate(status: dict[str, Any]) -> None:
            status["phase"] = "Pending"
            status["conditions"] = kubelet_conditions(
                status.get("conditions") or [], self.pod["spec"], phase="Pending", containers_ready=False
            )
            status["containerStatuses"] = self._container_status({"waiting": {"reason": reason, "message": message}})
            self._ips(status)

        self._write_status(mutate)

    def _finish(
        self, exit_code: int, reason: str, message: str, started: str, *, pod_reason: str = "", pod_message: str = ""
    ) -> None:
        phase = "Succeeded" if exit_code == 0 and not pod_reason else "Failed"
        terminated: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now(),
        }
        if message:
            terminated["message"] = message

        def mutate(status: dict[str, Any]) -> None:
            status["phase"] = phase
            status["startTime"] = status.get("startTime") or started
            status["conditions"] = kubelet_conditions(
                status.get("conditions") or [], self.pod["spec"], phase=phase, containers_ready=False
            )
            status["containerStatuses"] = self._container_status({"terminated": terminated})
            self._ips(status)
            if pod_reason:
                status["reason"] = pod_reason
                status["message"] = pod_message

        self._write_status(mutate)
        self.phase = phase  # done only once the Pod's status says so (is_running serves `kubectl logs`)

    # -- the run ---------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._run()
        except Exception as exc:  # never leave a Pod Running because of a bug here
            log.exception("pod %s: node agent error", self.key)
            if not self.done:
                self._finish(128, "StartError", f"edgeopt node agent error: {exc}", now())
        finally:
            shutil.rmtree(self.pod_dir, ignore_errors=True)
            self._finish_deletion()
            self.on_done(self)

    def _event(self, reason: str, message: str, *, warning: bool = False, component: str = "kubelet") -> None:
        """An Event on the Pod, as the kubelet records them (for `kubectl describe pod`)."""
        stamp = now()
        body = {
            "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": self.name,
                "namespace": self.namespace,
                "uid": self.uid,
            },
            "reason": reason,
            "message": message,
            "type": "Warning" if warning else "Normal",
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": component},
        }
        try:
            self.ctx.core.create_namespaced_event(self.namespace, body)
        except ApiException as exc:
            log.debug("pod %s: event %s not recorded: %s", self.key, reason, exc.reason)

    def _finish_deletion(self) -> None:
        """A bound Pod being deleted waits for its kubelet: once the process is gone, remove it for good."""
        try:
            resp = self.ctx.core.read_namespaced_pod(self.name, self.namespace, _preload_content=False)
            pod = json.loads(resp.data)
            if pod["metadata"]["uid"] == self.uid and pod["metadata"].get("deletionTimestamp"):
                # Options go in the body (the API ignores query options when a body is sent).
                self.ctx.core.delete_namespaced_pod(
                    self.name, self.namespace, body={"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}}
                )
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("pod %s: cannot finish deletion: %s", self.key, exc.reason)

    def _plan(self) -> ContainerPlan | None:
        """Resolve the Pod, waiting (Pending) on what kubelet would wait on; None when stopped first."""
        last = ""
        while True:
            try:
                return resolve(self.pod, self.pod["spec"]["containers"][0], self.pod_dir, self.ctx)
            except NotYet as exc:
                if exc.message != last:
                    log.info("pod %s pending: %s", self.key, exc.message)
                    self._event("Failed", f"Error: {exc.message}", warning=True)
                    self._pending(exc.reason, exc.message)
                    last = exc.message
            if self._stop.wait(RETRY_PENDING_SECONDS):
                return None

    def _run(self) -> None:
        self.pod_dir.mkdir(parents=True, exist_ok=True)
        self.pod_dir.chmod(0o700)  # tokens, Secret files and the env file live here while the Pod runs
        try:
            plan = self._plan()
        except CannotEmulate as exc:
            message = f"edgeopt node agent cannot emulate this Pod: {exc}"
            log.warning("pod %s: %s", self.key, message)
            self._event("Failed", message, warning=True)
            self._finish(128, "StartError", message, now(), pod_reason="CannotEmulate", pod_message=message)
            return
        if plan is None:
            self._finish(137, "Error", f"stopped before start ({self._stop_reason})", now())
            return
        spec = self.pod["spec"]
        policy = spec.get("restartPolicy", "Always")
        deadline = spec.get("activeDeadlineSeconds")
        ends_at = time.monotonic() + float(deadline) if deadline else None
        self._grace = float(spec.get("terminationGracePeriodSeconds", 30))
        backoff = BACKOFF_START
        while True:
            started, result = self._attempt(plan, ends_at)
            if self._stop_reason == "DeadlineExceeded":
                self._finish(
                    result.exit_code,
                    result.reason,
                    result.message,
                    started,
                    pod_reason="DeadlineExceeded",
                    pod_message="Pod was active on the node longer than the specified deadline",
                )
                return
            again = not self._stop.is_set() and (policy == "Always" or (policy == "OnFailure" and result.exit_code))
            if not again:
                self._finish(result.exit_code, result.reason, result.message, started)
                return
            if time.monotonic() - self._attempt_started >= BACKOFF_RESET:
                backoff = BACKOFF_START
            self._back_off(result, started, backoff)
            if self._stop.wait(backoff):
                self._finish(result.exit_code, result.reason, result.message, started)
                return
            backoff = min(backoff * 2, BACKOFF_MAX)
            self.restarts += 1

    def _attempt(self, plan: ContainerPlan, ends_at: float | None) -> tuple[str, ContainerResult]:
        """Start the container once and watch it (deadline, stop, probes) to its end."""
        started = now()
        self._attempt_started = time.monotonic()
        Path(plan.termination_file).write_bytes(b"")
        run = Running(plan, self.pod_dir, self.log_path)
        spec = self.pod["spec"]["containers"][0]
        # The command as written, not as expanded: $(VAR) may stand for a Secret.
        log.info(
            "pod %s: started container %s (%s): %s",
            self.key,
            plan.name,
            plan.image,
            (spec.get("command") or []) + (spec.get("args") or []),
        )
        self._event("Started", f"Started container {self.container}")
        self.phase = "Running"
        probes = Probes(spec, plan.name, self.ip or NODE_IP)
        self._write_running(started, probes)
        while run.poll() is None:
            if ends_at is not None and time.monotonic() >= ends_at and not self._stop.is_set():
                self.stop("DeadlineExceeded")
            if self._stop.wait(0.2):
                break
            changed, unhealthy = probes.tick()
            if unhealthy:
                log.info("pod %s: liveness probe failed: %s", self.key, unhealthy)
                self._event("Unhealthy", f"Liveness probe failed: {unhealthy}", warning=True)
                self._event("Killing", f"Container {self.container} failed liveness probe, will be restarted")
                run.stop(self._grace)
                break
            if changed or self._recheck.is_set():
                self._recheck.clear()
                self._write_running(started, probes)
        if run.poll() is None and self._stop.is_set():
            log.info("pod %s: stopping (%s)", self.key, self._stop_reason)
            self._event("Killing", f"Stopping container {self.container} ({self._stop_reason})")
            # A preStop sleep runs first, within the grace period, as the kubelet runs it.
            slept = min(float(prestop_sleep(spec) or 0), self._grace)
            if slept:
                time.sleep(slept)
            run.stop(max(self._grace - slept, 0))
        result = run.wait()
        if result.reason == "StartError":
            self._event("Failed", f"Error: cannot start container: {result.message[-500:]}", warning=True)
        return started, result

    def _write_running(self, started: str, probes: Probes) -> None:
        ready = self._containers_ready = probes.ready

        def running(status: dict[str, Any]) -> None:
            status["phase"] = "Running"
            status["startTime"] = status.get("startTime") or started
            status["conditions"] = kubelet_conditions(
                status.get("conditions") or [], self.pod["spec"], phase="Running", containers_ready=ready
            )
            status["containerStatuses"] = self._container_status(
                {"running": {"startedAt": started}}, ready=ready, started=probes.started
            )
            self._ips(status)

        self._write_status(running)

    def _back_off(self, result: ContainerResult, started: str, backoff: float) -> None:
        """Between restarts: Running, not ready, the container Waiting in CrashLoopBackOff with its last end."""
        self.last_state = {
            "terminated": {
                "exitCode": result.exit_code,
                "reason": result.reason,
                "startedAt": started,
                "finishedAt": now(),
                **({"message": result.message} if result.message else {}),
            }
        }
        message = f"back-off {backoff:.0f}s restarting failed container={self.container} pod={self.name}"
        self._event("BackOff", f"Back-off restarting failed container {self.container}", warning=True)

        self._containers_ready = False

        def waiting(status: dict[str, Any]) -> None:
            status["conditions"] = kubelet_conditions(
                status.get("conditions") or [], self.pod["spec"], phase="Running", containers_ready=False
            )
            status["containerStatuses"] = self._container_status(
                {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
            )
            self._ips(status)

        self._write_status(waiting)


class Probes:
    """A container's startup, readiness and liveness probes, run as a kubelet runs them: at the Pod's IP."""

    def __init__(self, container: dict[str, Any], name: str, host: str = NODE_IP) -> None:
        self.container = container
        self.name = name
        self.host = host
        self.t0 = time.monotonic()
        self.specs = {k: container.get(f"{k}Probe") for k in ("startup", "readiness", "liveness")}
        self.next = {k: self.t0 + float((p or {}).get("initialDelaySeconds", 0)) for k, p in self.specs.items()}
        self.counts = {k: [0, 0] for k in self.specs}  # consecutive successes, failures
        self.started = self.specs["startup"] is None
        self.ready = self.specs["readiness"] is None and self.started

    def tick(self) -> tuple[bool, str]:
        """Run the probes that are due: (readiness or startup changed, liveness failure message or "")."""
        before = (self.ready, self.started)
        unhealthy = ""
        now_ = time.monotonic()
        for kind in ("startup", "readiness", "liveness"):
            spec = self.specs[kind]
            if spec is None or now_ < self.next[kind] or (kind != "startup" and not self.started):
                continue
            if kind == "startup" and self.started:
                continue
            self.next[kind] = now_ + float(spec.get("periodSeconds", 10))
            ok, detail = probe_once(spec, self.container, self.name, self.host)
            succ, fail = self.counts[kind]
            succ, fail = (succ + 1, 0) if ok else (0, fail + 1)
            self.counts[kind] = [succ, fail]
            if kind == "startup":
                if ok:
                    self.started = True
                    self.ready = self.specs["readiness"] is None
                elif fail >= int(spec.get("failureThreshold", 3)):
                    unhealthy = f"startup: {detail}"
            elif kind == "readiness":
                if ok and succ >= int(spec.get("successThreshold", 1)):
                    self.ready = True
                elif not ok and fail >= int(spec.get("failureThreshold", 3)):
                    self.ready = False
            elif not ok and fail >= int(spec.get("failureThreshold", 3)):
                unhealthy = detail
        return (self.ready, self.started) != before, unhealthy


def _port(value: Any, container: dict[str, Any]) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise CannotEmulate(f"probe port {value!r} names no port of container {container['name']}")


def probe_once(spec: dict[str, Any], container: dict[str, Any], name: str, host: str = NODE_IP) -> tuple[bool, str]:
    """One probe: (success, what failed); httpGet and tcpSocket go to ``host`` (the Pod IP) unless they name one."""
    timeout = float(spec.get("timeoutSeconds", 1))
    try:
        if "httpGet" in spec:
            get = spec["httpGet"]
            scheme = str(get.get("scheme", "HTTP")).lower()
            url = f"{scheme}://{get.get('host') or host}:{_port(get['port'], container)}{get.get('path', '/')}"
            request = urllib.request.Request(url, headers={h["name"]: h["value"] for h in get.get("httpHeaders") or []})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as rsp:
                    code = rsp.status
            except urllib.error.HTTPError as exc:
                code = exc.code
            return 200 <= code < 400, f"HTTP probe failed with statuscode: {code}"
        if "tcpSocket" in spec:
            port = _port(spec["tcpSocket"]["port"], container)
            with socket.create_connection((spec["tcpSocket"].get("host") or host, port), timeout=timeout):
                return True, ""
        code = exec_in(name, list(spec["exec"]["command"]), timeout)
        return code == 0, f"command {spec['exec']['command']} exited with {code}"
    except (OSError, urllib.error.URLError) as exc:
        return False, str(exc)
