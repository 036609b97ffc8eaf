"""The job controller half of the local stand-in for a node: Jobs -> Pods -> Job status.

No kubelet runs in the dev control plane, and the real job controller would
create Pods nobody runs, so it is not started.  Instead this process watches
Jobs labelled ``app.kubernetes.io/managed-by=edgeopt`` in all namespaces and,
for each, does what the job controller does:

* creates the Pod (generateName ``<job>-``, the job-name/controller-uid labels,
  a controlling owner reference to the Job) and hands it to kubelet.py;
* writes Job status: startTime, active/ready/succeeded/failed, the interim
  SuccessCriteriaMet/FailureTarget conditions and then Complete (with
  completionTime) or Failed (BackoffLimitExceeded, DeadlineExceeded,
  PodFailurePolicy: onExitCodes/onPodConditions rules with FailJob, Ignore, Count);
* retries failed Pods up to backoffLimit with exponential back-off (the real
  controller waits 10 s, 20 s, 40 s ... capped at 6 min; ``--backoff-base``);
* enforces activeDeadlineSeconds by deleting the active Pods.

A Pod deleted by anyone (the garbage collector after ``kubectl delete job``,
for instance) has its process stopped.  A Job deleted with *orphan*
propagation leaves its Pod running, as in a real cluster.

Run by ``edgeopt dev up``: ``python -m edgeopt.dev.jobrunner --kubeconfig K --dir DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from edgeopt.dev import processes
from edgeopt.dev.kubelet import PodRun, now
from edgeopt.dev.podspec import RuntimeContext

log = logging.getLogger("edgeopt.jobrunner")
MANAGED_BY = "app.kubernetes.io/managed-by=edgeopt"
DEFAULT_BACKOFF_LIMIT = 6
MAX_BACKOFF_SECONDS = 360.0


def _json(resp: Any) -> dict[str, Any]:
    return dict(json.loads(resp.data))


def _finished(job: dict[str, Any]) -> bool:
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
        self.wake = threading.Event()
        self.deleted = threading.Event()
        self.thread = threading.Thread(target=self._main, name=f"job-{self.key}", daemon=True)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    # -- API helpers -----------------------------------------------------------------------
    def _read(self) -> dict[str, Any] | None:
        try:
            job = _json(self.runner.batch.read_namespaced_job(self.name, self.namespace, _preload_content=False))
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
                return _json(self.runner.batch.replace_namespaced_job_status(
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
        return list(_json(resp)["items"])

    def _adopt_lost(self, pods: list[dict[str, Any]]) -> None:
        """Pods left active by a previous runner have no process any more: they failed."""
        ours = {r.uid for r in self.runs}
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
            if job is None or _finished(job):
                return
            if self.deleted.is_set() or job["metadata"].get("deletionTimestamp"):
                # Being deleted: create nothing more; the GC removes the Pods.
                return
            spec = job["spec"]
            if spec.get("suspend"):
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            for key in ("completions", "parallelism"):
                if spec.get(key, 1) != 1:
                    self._event("NotEmulated", f"{key}={spec.get(key)}: the edgeopt job runner emulates 1 only",
                                "Warning")
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
            pod = _json(self.runner.core.create_namespaced_pod(self.namespace, body, _preload_content=False))
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


class JobRunner:
    """Watches Jobs and Pods; one JobWorker thread per unfinished Job."""

    def __init__(self, api: client.ApiClient, root: Path, backoff_base: float, selector: str) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.root = root
        self.backoff_base = backoff_base
        self.selector = selector
        host = urlparse(api.configuration.host)
        self.ctx = RuntimeContext(root=root, core=self.core, api_host=host.hostname or "127.0.0.1",
                                  api_port=host.port or 443, venv_bin=str(Path(sys.executable).parent))
        self.workers: dict[str, JobWorker] = {}
        self.pod_runs: dict[str, PodRun] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def register(self, run: PodRun, worker: JobWorker) -> None:
        with self.lock:
            self.pod_runs[run.uid] = run

    def pod_done(self, run: PodRun) -> None:
        with self.lock:
            self.pod_runs.pop(run.uid, None)
            worker = next((w for w in self.workers.values() if run in w.runs), None)
        if worker:
            worker.wake.set()

    def worker_done(self, worker: JobWorker) -> None:
        with self.lock:
            if self.workers.get(worker.uid) is worker:
                del self.workers[worker.uid]

    def on_job(self, kind: str, job: dict[str, Any]) -> None:
        uid = job["metadata"]["uid"]
        with self.lock:
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker:
                    worker.deleted.set()
                    worker.wake.set()
                return
            if worker and worker.alive:
                worker.wake.set()
                return
            if _finished(job) or job["metadata"].get("deletionTimestamp"):
                return
            worker = JobWorker(self, job)
            self.workers[uid] = worker
        log.info("job %s/%s: watching", worker.namespace, worker.name)
        worker.thread.start()

    def on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        if kind != "DELETED" and not pod["metadata"].get("deletionTimestamp"):
            return
        with self.lock:
            run = self.pod_runs.get(pod["metadata"]["uid"])
        if run is not None:
            grace = pod["metadata"].get("deletionGracePeriodSeconds")
            if grace is None:
                grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            run.stop("Pod deleted", grace=float(grace))

    def _stream(self, list_fn: Callable[..., Any], handler: Callable[[str, dict[str, Any]], None],
                selector: str, ready: threading.Event) -> None:
        """List then watch, forever; a 410 Gone or a broken stream re-lists."""
        while not self.stopping.is_set():
            try:
                data = _json(list_fn(label_selector=selector, _preload_content=False))
                for item in data["items"]:
                    handler("ADDED", item)
                ready.set()
                rv = data["metadata"]["resourceVersion"]
                for kind, obj in self._events(list_fn, selector, rv):
                    handler(kind, obj)
            except ApiException as exc:
                if exc.status != 410:
                    log.warning("watch %s: %s", list_fn.__name__, exc.reason)
                    time.sleep(1)
            except Exception as exc:
                if self.stopping.is_set():
                    return
                log.warning("watch %s broke: %r", list_fn.__name__, exc)
                time.sleep(1)

    def _events(self, list_fn: Callable[..., Any], selector: str, rv: str) -> Iterator[tuple[str, dict[str, Any]]]:
        while not self.stopping.is_set():
            w = watch.Watch()
            for event in w.stream(list_fn, label_selector=selector, resource_version=rv, timeout_seconds=60,
                                  allow_watch_bookmarks=True):
                obj = event["raw_object"]
                if event["type"] == "ERROR":
                    if obj.get("code") == 410:
                        return
                    raise RuntimeError(obj.get("message"))
                rv = obj["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    yield event["type"], obj

    def run(self) -> None:
        _clean_stale_pods(self.root)
        jobs_ready, pods_ready = threading.Event(), threading.Event()
        threading.Thread(target=self._stream, name="watch-pods", daemon=True, args=(
            self.core.list_pod_for_all_namespaces, self.on_pod, "batch.kubernetes.io/controller-uid", pods_ready,
        )).start()
        threading.Thread(target=self._stream, name="watch-jobs", daemon=True, args=(
            self.batch.list_job_for_all_namespaces, self.on_job, self.selector, jobs_ready,
        )).start()
        while not (jobs_ready.wait(0.2) and pods_ready.wait(0.2)):
            if self.stopping.is_set():
                return
        (self.root / "run" / "jobrunner.ready").write_text(f"{now()}\n")
        log.info("job runner ready: Jobs with %s in all namespaces", self.selector)
        self.stopping.wait()

    def shutdown(self) -> None:
        """Stop every Pod process (the node is going away) and report them Failed."""
        self.stopping.set()
        with self.lock:
            runs = list(self.pod_runs.values())
        for run in runs:
            run.stop("job runner stopping", grace=5.0)
        for run in runs:
            run.thread.join(timeout=15)


def _clean_stale_pods(root: Path) -> None:
    for pidfile in sorted((root / "run" / "pods").glob("*/pid")):
        processes.stop_pidfile(pidfile, grace=5.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeopt.dev.jobrunner", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--dir", required=True, type=Path, help="the control plane folder (PVCs, logs, pid files)")
    parser.add_argument("--backoff-base", type=float, default=10.0,
                        help="seconds before the first retry of a failed Pod (doubles each time; real: 10)")
    parser.add_argument("--selector", default=MANAGED_BY, help="label selector of the Jobs to run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    api = config.new_client_from_config(config_file=args.kubeconfig)
    runner = JobRunner(api, args.dir.resolve(), args.backoff_base, args.selector)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        runner.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runner.run()
    runner.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
