"""The job controller's logic for one Job: Pods, retries, deadlines, status and conditions.

Written to match what kube-controller-manager's job controller (v1.32) writes,
so the operator reads the same fields here as in a cluster: startTime,
active/ready/succeeded/failed, the interim SuccessCriteriaMet/FailureTarget
conditions, then Complete (with completionTime) or Failed with reason
BackoffLimitExceeded, DeadlineExceeded or PodFailurePolicy.  Only what one
local "node" can do is emulated: one Pod at a time, one completion.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from kubernetes.client.rest import ApiException

from edgeopt.dev.kubelet import PodRun, now

if TYPE_CHECKING:
    from edgeopt.dev.jobrunner import JobRunner

log = logging.getLogger("edgeopt.jobrunner")
DEFAULT_BACKOFF_LIMIT = 6
MAX_BACKOFF_SECONDS = 360.0


def as_json(resp: Any) -> dict[str, Any]:
    return dict(json.loads(resp.data))


def finished(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


class JobWorker:
    """Drives one Job (by uid) until it is Complete, Failed or gone."""

    def __init__(self, runner: JobRunner, job: dict[str, Any]) -> None:
        self.runner = runner
        self.name = job["metadata"]["name"]
        self.namespace = job["metadata"]["namespace"]
        self.uid = job["metadata"]["uid"]
        self.key = f"{self.namespace}/{self.name}"
        self.runs: list[PodRun] = []
        self.evaluated: set[str] = set()  # failed runs checked against podFailurePolicy
        self.ignored: set[str] = set()  # failed runs an Ignore rule keeps out of the count
        self.warned = False
        self.wake = threading.Event()
        self.deleted = threading.Event()
        self.thread = threading.Thread(target=self._main, name=f"job-{self.key}", daemon=True)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    # -- API helpers -----------------------------------------------------------------------
    def _read(self) -> dict[str, Any] | None:
        try:
            job = as_json(self.runner.batch.read_namespaced_job(self.name, self.namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return job if job["metadata"]["uid"] == self.uid else None

    def _update_status(self, mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
        for _ in range(10):
            job = self._read()
            if job is None:
                return None
            before = json.dumps(job.get("status") or {}, sort_keys=True)
            status = job.setdefault("status", {})
            mutate(status)
            if json.dumps(status, sort_keys=True) == before:
                return job
            try:
                return as_json(self.runner.batch.replace_namespaced_job_status(
                    self.name, self.namespace, job, _preload_content=False))
            except ApiException as exc:
                if exc.status == 404:
                    return None
                if exc.status != 409:
                    raise
        return None

    def _event(self, reason: str, message: str, kind: str = "Normal") -> None:
        stamp = now()
        body = {
            "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
            "involvedObject": {"apiVersion": "batch/v1", "kind": "Job", "name": self.name,
                               "namespace": self.namespace, "uid": self.uid},
            "reason": reason, "message": message, "type": kind, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "source": {"component": "job-controller"},
        }
        try:
            self.runner.core.create_namespaced_event(self.namespace, body)
        except ApiException as exc:
            log.debug("event %s on %s not recorded: %s", reason, self.key, exc.reason)

    # -- the controller loop ---------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("job %s: controller error", self.key)
        finally:
            self.runner.worker_done(self)

    def _pods(self) -> list[dict[str, Any]]:
        resp = self.runner.core.list_namespaced_pod(
            self.namespace, label_selector=f"batch.kubernetes.io/controller-uid={self.uid}", _preload_content=False)
        return list(as_json(resp)["items"])

    def _adopt_lost(self, pods: list[dict[str, Any]]) -> None:
        """Pods left active by a previous runner have no process any more: they failed."""
        with self.runner.lock:
            ours = {r.uid for r in self.runs} | set(self.runner.pod_runs)
        for pod in pods:
            phase = (pod.get("status") or {}).get("phase")
            if pod["metadata"]["uid"] not in ours and phase in (None, "Pending", "Running"):
                pod.setdefault("status", {}).update(phase="Failed", reason="Lost",
                                                    message="the edgeopt job runner restarted and lost this process")
                try:
                    self.runner.core.replace_namespaced_pod_status(pod["metadata"]["name"], self.namespace, pod)
                    pod["status"]["phase"] = "Failed"
                except ApiException as exc:
                    log.warning("job %s: cannot mark lost pod failed: %s", self.key, exc.reason)

    def _counts(self, job: dict[str, Any]) -> tuple[int, int, list[PodRun]]:
        """(succeeded, failed, active runs), from the Pods and from the runs this runner finished.

        A run's own result wins over its Pod object (which may lag a status
        write, or be gone: deleted after it finished).  Failures a
        podFailurePolicy rule said to Ignore do not count.
        """
        pods = self._pods()
        self._adopt_lost(pods)
        phases = {p["metadata"]["uid"]: (p.get("status") or {}).get("phase") for p in pods}
        for r in self.runs:
            if r.done:
                phases[r.uid] = r.phase
        succeeded = sum(ph == "Succeeded" for ph in phases.values())
        failed = sum(ph == "Failed" and uid not in self.ignored for uid, ph in phases.items())
        status = job.get("status") or {}
        active = [r for r in self.runs if not r.done]
        return max(succeeded, status.get("succeeded", 0)), max(failed, status.get("failed", 0)), active

    def _pod_failure_policy(self, job: dict[str, Any]) -> str | None:
        """Apply spec.podFailurePolicy to newly failed runs; the FailJob message, if a rule says so."""
        rules = (job["spec"].get("podFailurePolicy") or {}).get("rules") or []
        for run in self.runs:
            if run.phase != "Failed" or run.uid in self.evaluated:
                continue
            self.evaluated.add(run.uid)
            for index, rule in enumerate(rules):
                if not _rule_matches(rule, run):
                    continue
                action = rule.get("action")
                if action == "Ignore":
                    self.ignored.add(run.uid)
                elif action == "FailJob":
                    if rule.get("onExitCodes"):
                        return (f"Container {run.container} for pod {self.namespace}/{run.name} failed with exit "
                                f"code {run.exit_code} matching FailJob rule at index {index}")
                    return f"Pod {self.namespace}/{run.name} has condition matching FailJob rule at index {index}"
                break  # Count (and FailIndex, for non-indexed Jobs): an ordinary failure
        return None

    def _loop(self) -> None:
        while True:
            job = self._read()
            if job is None or finished(job):
                return
            if self.deleted.is_set() or job["metadata"].get("deletionTimestamp"):
                # Being deleted: create nothing more; the GC removes the Pods.
                return
            spec = job["spec"]
            if spec.get("suspend"):
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            unsupported = [f"{k}={spec[k]}" for k in ("completions", "parallelism") if spec.get(k, 1) != 1]
            if unsupported and not self.warned:
                self.warned = True
                self._event("NotEmulated", f"{', '.join(unsupported)}: the edgeopt job runner runs one Pod at a "
                            "time to one completion", "Warning")
            policy_failure = self._pod_failure_policy(job)
            succeeded, failed, active = self._counts(job)
            if policy_failure:
                self._terminate(active, "PodFailurePolicy", policy_failure, succeeded, failed)
                return
            start_stamp = (job.get("status") or {}).get("startTime") or now()
            deadline = spec.get("activeDeadlineSeconds")
            elapsed = _seconds_since(start_stamp)
            if deadline and elapsed >= float(deadline):
                self._terminate(active, "DeadlineExceeded", "Job was active longer than specified deadline",
                                succeeded, failed)
                return
            if succeeded >= 1 and not active:
                self._complete(succeeded, failed)
                return
            backoff_limit = int(spec.get("backoffLimit", DEFAULT_BACKOFF_LIMIT))
            if failed > backoff_limit and not active:
                self._terminate([], "BackoffLimitExceeded", "Job has reached the specified backoff limit",
                                succeeded, failed)
                return
            if not active:
                delay = self._backoff_remaining(failed)
                if delay <= 0:
                    run = self._create_pod(job)
                    if run is not None:
                        active = [run]
                else:
                    self.wake.wait(min(delay, 1.0))
                    self.wake.clear()
            ready = sum(r.phase == "Running" for r in active)

            def counts(status: dict[str, Any], *, ready: int = ready, n: int = len(active), ok: int = succeeded,
                       bad: int = failed, start: str = start_stamp) -> None:
                status["startTime"] = status.get("startTime") or start
                status["active"] = n
                status["ready"] = ready
                status["succeeded"] = ok
                status["failed"] = bad
                status.setdefault("terminating", 0)
                status["uncountedTerminatedPods"] = {}
                for k in ("active", "succeeded", "failed"):
                    if status[k] == 0:
                        status.pop(k)

            self._update_status(counts)
            wait = 1.0
            if deadline:
                wait = max(0.05, min(wait, float(deadline) - elapsed))
            self.wake.wait(wait)
            self.wake.clear()

    def _backoff_remaining(self, failed: int) -> float:
        if failed <= 0:
            return 0.0
        last = max((r.finished_at for r in self.runs if r.done), default=0.0)
        if not last:
            return 0.0  # failures recorded by an earlier runner: no timestamp to wait from
        delay = min(self.runner.backoff_base * (2 ** (failed - 1)), MAX_BACKOFF_SECONDS)
        return last + delay - time.monotonic()

    def _create_pod(self, job: dict[str, Any]) -> PodRun | None:
        template = job["spec"]["template"]
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        labels.update({
            "batch.kubernetes.io/controller-uid": self.uid, "batch.kubernetes.io/job-name": self.name,
            "controller-uid": self.uid, "job-name": self.name,
        })
        body = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "generateName": f"{self.name}-", "namespace": self.namespace, "labels": labels,
                "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": self.name, "uid": self.uid,
                                     "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": template["spec"],
        }
        try:
            pod = as_json(self.runner.core.create_namespaced_pod(self.namespace, body, _preload_content=False))
        except ApiException as exc:
            message = exc.body if isinstance(exc.body, str) else str(exc.reason)
            try:
                message = json.loads(message).get("message", message)
            except ValueError:
                pass
            log.warning("job %s: cannot create pod: %s", self.key, message)
            self._event("FailedCreate", f"Error creating: {message}", "Warning")
            self.wake.wait(self.runner.backoff_base)
            return None
        self._event("SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
        run = PodRun(pod, self.runner.ctx, self.runner.pod_done)
        self.runs.append(run)
        self.runner.register(run, self)
        run.start()
        return run

    def _terminate(self, active: list[PodRun], reason: str, message: str, succeeded: int, failed: int) -> None:
        """FailureTarget now; stop the active Pods (deleting them, as the controller does); then Failed."""
        def target(status: dict[str, Any]) -> None:
            _set_condition(status, "FailureTarget", reason, message)

        self._update_status(target)
        for run in active:
            run.stop(f"Job {reason}", grace=float(run.pod["spec"].get("terminationGracePeriodSeconds", 30)))
            try:
                self.runner.core.delete_namespaced_pod(run.name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    log.warning("job %s: cannot delete pod %s: %s", self.key, run.name, exc.reason)
        for run in active:
            run.thread.join()
        failed += len(active)

        def final(status: dict[str, Any]) -> None:
            status.update(active=0, ready=0, succeeded=succeeded, failed=failed, terminating=0,
                          uncountedTerminatedPods={})
            status.pop("active")
            if not succeeded:
                status.pop("succeeded")
            status.setdefault("startTime", now())
            _set_condition(status, "Failed", reason, message)

        self._update_status(final)
        self._event(reason, message, "Warning")
        log.info("job %s: Failed (%s)", self.key, reason)

    def _complete(self, succeeded: int, failed: int) -> None:
        def complete(status: dict[str, Any]) -> None:
            stamp = now()
            status.update(ready=0, succeeded=succeeded, terminating=0, uncountedTerminatedPods={})
            status.pop("active", None)
            if failed:
                status["failed"] = failed
            status.setdefault("startTime", stamp)
            message = "Reached expected number of succeeded pods"
            _set_condition(status, "SuccessCriteriaMet", "CompletionsReached", message)
            _set_condition(status, "Complete", "CompletionsReached", message)
            status["completionTime"] = stamp

        self._update_status(complete)
        self._event("Completed", "Job completed")
        log.info("job %s: Complete", self.key)


def _rule_matches(rule: dict[str, Any], run: PodRun) -> bool:
    codes = rule.get("onExitCodes")
    if codes:
        if codes.get("containerName") not in (None, run.container) or run.exit_code in (None, 0):
            return False
        listed = run.exit_code in codes.get("values", [])
        return listed if codes.get("operator") == "In" else not listed
    wanted = rule.get("onPodConditions") or []
    have = {(c.get("type"), c.get("status")) for c in run.conditions}
    return any((c.get("type"), c.get("status", "True")) in have for c in wanted)


def _seconds_since(stamp: str) -> float:
    started = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - started).total_seconds()


def _set_condition(status: dict[str, Any], kind: str, reason: str, message: str) -> None:
    conditions = status.setdefault("conditions", [])
    if any(c.get("type") == kind for c in conditions):
        return
    stamp = now()
    conditions.append({"type": kind, "status": "True", "reason": reason, "message": message,
                       "lastProbeTime": stamp, "lastTransitionTime": stamp})
