"""The kubelet half of the node agent: run one Pod as a local process and report it.

A :class:`PodRun` owns one Pod from Pending to Succeeded/Failed: it builds
the run plan (podspec.py), starts ``python -m edgeopt_dev.sandbox`` in its own
process group (which enters a private mount namespace and execs the
container command), and writes Pod status the way kubelet does: phase,
conditions, ``containerStatuses[].state`` with exitCode, reason, message and
timestamps.  The termination message file is read after exit (4096 bytes at
most, like kubelet).  Deleting the Pod, the Pod's own activeDeadlineSeconds,
or the job controller asking (the Job's deadline) stops the process with
SIGTERM, then SIGKILL after the grace period.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from kubernetes.client.rest import ApiException

from edgeopt_dev import processes, sandbox
from edgeopt_dev.podspec import CannotEmulate, NotYet, Plan, RuntimeContext, build_plan, check_schedulable

log = logging.getLogger("edgeopt.nodeagent")
MAX_MESSAGE = 4096
RETRY_PENDING_SECONDS = 2.0


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_key(pod: dict[str, Any]) -> str:
    return f"{pod['metadata']['namespace']}_{pod['metadata']['name']}"


def _conditions(**states: tuple[bool, str | None]) -> list[dict[str, Any]]:
    stamp = now()
    out = []
    for kind, (ok, reason) in states.items():
        cond: dict[str, Any] = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": stamp,
                                "lastProbeTime": None}
        if reason:
            cond["reason"] = reason
        out.append(cond)
    return out


class PodRun:
    """One Pod, run to completion in a thread; ``on_done(self)`` is called at the end."""

    def __init__(self, pod: dict[str, Any], ctx: RuntimeContext, on_done: Callable[[PodRun], None]) -> None:
        self.pod = pod
        self.ctx = ctx
        self.on_done = on_done
        self.name = pod["metadata"]["name"]
        self.namespace = pod["metadata"]["namespace"]
        self.uid = pod["metadata"]["uid"]
        self.key = pod_key(pod)
        self.pod_dir = ctx.root / "run" / "pods" / self.key
        self.log_path = ctx.root / "logs" / f"{self.key}.log"
        self.container = pod["spec"]["containers"][0]["name"]
        self.conditions: list[dict[str, Any]] = []  # the last Pod conditions written
        self.phase = "Pending"
        self.exit_code: int | None = None
        self.finished_at = 0.0
        self._stop = threading.Event()
        self._stop_reason = ""
        self._grace = 30.0
        self.bound = bool(pod["spec"].get("nodeName"))
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
        """The Pod shares this machine's network (like hostNetwork): its IP is the node's."""
        if self.bound:
            status.update(hostIP="127.0.0.1", hostIPs=[{"ip": "127.0.0.1"}], podIP="127.0.0.1",
                          podIPs=[{"ip": "127.0.0.1"}])

    def _container_status(self, state: dict[str, Any], *, ready: bool = False) -> list[dict[str, Any]]:
        c = self.pod["spec"]["containers"][0]
        return [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": ready,
                 "started": "running" in state, "restartCount": 0, "state": state}]

    def _pending(self, reason: str, message: str, scheduled: bool) -> None:
        def mutate(status: dict[str, Any]) -> None:
            status["phase"] = "Pending"
            if not scheduled:
                status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": reason,
                                         "message": message, "lastTransitionTime": now(), "lastProbeTime": None}]
                status.pop("containerStatuses", None)
                return
            status["conditions"] = _conditions(PodReadyToStartContainers=(True, None), Initialized=(True, None),
                                               Ready=(False, "ContainersNotReady"),
                                               ContainersReady=(False, "ContainersNotReady"),
                                               PodScheduled=(True, None))
            status["containerStatuses"] = self._container_status({"waiting": {"reason": reason, "message": message}})
            self._ips(status)

        self._write_status(mutate)

    def _finish(self, exit_code: int, reason: str, message: str, started: str, *, pod_reason: str = "",
                pod_message: str = "") -> None:
        phase = "Succeeded" if exit_code == 0 and not pod_reason else "Failed"
        terminated: dict[str, Any] = {"exitCode": exit_code, "reason": reason, "startedAt": started,
                                      "finishedAt": now()}
        if message:
            terminated["message"] = message

        def mutate(status: dict[str, Any]) -> None:
            status["phase"] = phase
            status["startTime"] = status.get("startTime") or started
            status["conditions"] = _conditions(PodReadyToStartContainers=(False, None), Initialized=(True, None),
                                               Ready=(False, "PodCompleted"), ContainersReady=(False, "PodCompleted"),
                                               PodScheduled=(True, None))
            status["containerStatuses"] = self._container_status({"terminated": terminated})
            self._ips(status)
            if pod_reason:
                status["reason"] = pod_reason
                status["message"] = pod_message
            self.conditions = status["conditions"]

        self._write_status(mutate)
        # Only now is the run done for the job controller: the Pod already says so.
        self.exit_code = exit_code
        self.finished_at = time.monotonic()
        self.phase = phase

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
        """An Event on the Pod, as scheduler and kubelet record them (for `kubectl describe pod`)."""
        stamp = now()
        body = {
            "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "namespace": self.namespace,
                               "uid": self.uid},
            "reason": reason, "message": message, "type": "Warning" if warning else "Normal", "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "source": {"component": component},
        }
        try:
            self.ctx.core.create_namespaced_event(self.namespace, body)
        except ApiException as exc:
            log.debug("pod %s: event %s not recorded: %s", self.key, reason, exc.reason)

    def _bind(self) -> None:
        """What the scheduler does once the Pod fits: bind it to the node (so `kubectl logs` finds us)."""
        if self.bound or not self.ctx.node_name:
            return
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": self.name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": self.ctx.node_name}}
        try:  # _preload_content=False: the client cannot deserialize this response
            self.ctx.core.create_namespaced_pod_binding(self.name, self.namespace, body, _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:  # 409: already bound
                raise
        self.bound = True
        self._event("Scheduled", f"Successfully assigned {self.namespace}/{self.name} to {self.ctx.node_name}",
                    component="default-scheduler")
        self.pod["spec"]["nodeName"] = self.ctx.node_name

    def _finish_deletion(self) -> None:
        """A bound Pod being deleted waits for its kubelet: once the process is gone, remove it for good."""
        try:
            resp = self.ctx.core.read_namespaced_pod(self.name, self.namespace, _preload_content=False)
            pod = json.loads(resp.data)
            if pod["metadata"]["uid"] == self.uid and pod["metadata"].get("deletionTimestamp"):
                # Options go in the body (the API ignores query options when a body is sent).
                self.ctx.core.delete_namespaced_pod(self.name, self.namespace, body={
                    "gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}})
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("pod %s: cannot finish deletion: %s", self.key, exc.reason)

    def _plan(self) -> Plan | None:
        """Build the plan, waiting (Pending) on what kubelet would wait on; None when stopped first."""
        last = ""
        while True:
            try:
                if not self.bound:
                    check_schedulable(self.pod, self.ctx)
                    self._bind()
                return build_plan(self.pod, self.pod_dir, self.ctx)
            except NotYet as exc:
                if exc.message != last:
                    log.info("pod %s pending: %s", self.key, exc.message)
                    if exc.scheduled:
                        self._event("Failed", f"Error: {exc.message}", warning=True)
                    else:
                        self._event("FailedScheduling", exc.message, warning=True, component="default-scheduler")
                    self._pending(exc.reason, exc.message, exc.scheduled)
                    last = exc.message
            if self._stop.wait(RETRY_PENDING_SECONDS):
                return None

    def _run(self) -> None:
        self.pod_dir.mkdir(parents=True, exist_ok=True)
        self.pod_dir.chmod(0o700)  # tokens, Secret files and the plan's env live here while the Pod runs
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
        for warning in plan.warnings:
            log.warning("pod %s: %s", self.key, warning)
        plan_file = self.pod_dir / "plan.json"
        scratch = self.pod_dir / "scratch"
        scratch.mkdir(exist_ok=True)
        error_read, error_write = os.pipe()
        plan_file.write_text(json.dumps(plan.to_json(self.name, scratch, error_write)))
        plan_file.chmod(0o600)
        started = now()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.log_path, "ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "edgeopt_dev.sandbox", str(plan_file)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    env={"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"},
                    pass_fds=(error_write,),
                )
        finally:
            os.close(error_write)
        processes.write_pidfile(self.pod_dir / "pid", proc.pid)
        spec = self.pod["spec"]["containers"][0]
        # The command as written, not as expanded: $(VAR) may stand for a Secret.
        log.info("pod %s: started pid %d: %s", self.key, proc.pid, spec["command"] + spec.get("args", []))
        self._event("Started", f"Started container {self.container}")
        self.phase = "Running"

        def running(status: dict[str, Any]) -> None:
            status["phase"] = "Running"
            status["startTime"] = status.get("startTime") or started
            status["conditions"] = _conditions(PodReadyToStartContainers=(True, None), Initialized=(True, None),
                                               Ready=(True, None), ContainersReady=(True, None),
                                               PodScheduled=(True, None))
            status["containerStatuses"] = self._container_status({"running": {"startedAt": started}}, ready=True)
            self._ips(status)

        self._write_status(running)
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        ends_at = time.monotonic() + float(deadline) if deadline else None
        self._grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        while proc.poll() is None:
            if ends_at is not None and time.monotonic() >= ends_at and not self._stop.is_set():
                self.stop("DeadlineExceeded")
            if self._stop.wait(0.1):
                break
        if proc.poll() is None:
            log.info("pod %s: stopping (%s)", self.key, self._stop_reason)
            self._event("Killing", f"Stopping container {self.container} ({self._stop_reason})")
            _terminate(proc, self._grace)
        code = proc.wait()
        _kill_group(proc.pid)
        exit_code = code if code >= 0 else 128 - code
        with os.fdopen(error_read, "rb") as errors:
            setup_error = errors.read(MAX_MESSAGE).decode(errors="replace")
        if code == sandbox.SETUP_FAILED and setup_error:
            self._finish(128, "StartError", f"cannot start container: {setup_error}", started)
            self._event("Failed", f"Error: cannot start container: {setup_error}", warning=True)
            return
        message = self._termination_message(plan, exit_code)
        reason = "Completed" if exit_code == 0 else "Error"
        if self._stop_reason == "DeadlineExceeded":
            self._finish(exit_code, reason, message, started, pod_reason="DeadlineExceeded",
                         pod_message="Pod was active on the node longer than the specified deadline")
        else:
            self._finish(exit_code, reason, message, started)

    def _termination_message(self, plan: Plan, exit_code: int) -> str:
        try:
            with open(self.pod_dir / "termination-log", "rb") as f:
                message = f.read(MAX_MESSAGE).decode(errors="replace")
        except OSError:
            message = ""
        if not message and plan.fallback_to_logs and exit_code != 0:
            try:
                lines = self.log_path.read_bytes().decode(errors="replace").splitlines()[-80:]
                message = "\n".join(lines)[-2048:]
            except OSError:
                pass
        return message


def _terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the group, SIGKILL after ``grace`` - without reaping: Popen must see the exit code."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=max(grace, 0.0))
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)


def _kill_group(pgid: int) -> None:
    """Whatever the container process left in its group goes too (kubelet kills the whole cgroup)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
