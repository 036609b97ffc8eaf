"""The local stand-in for job controller + node: watches Jobs and Pods, one worker per Job.

No kubelet runs in the dev control plane, and the real job controller would
create Pods nobody runs, so it is not started.  Instead this process watches
Jobs labelled ``app.kubernetes.io/managed-by=edgeopt`` in all namespaces and,
for each, does what the job controller does (jobcontroller.py; kubelet.py runs the Pods):

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
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from edgeopt.dev import processes
from edgeopt.dev.jobcontroller import JobWorker, as_json, finished
from edgeopt.dev.kubelet import PodRun, now
from edgeopt.dev.node import NODE_NAME, KubeletServer, register_node
from edgeopt.dev.podspec import RuntimeContext

log = logging.getLogger("edgeopt.jobrunner")
MANAGED_BY = "app.kubernetes.io/managed-by=edgeopt"


class JobRunner:
    """Watches Jobs and Pods; one JobWorker thread per unfinished Job."""

    def __init__(self, api: client.ApiClient, root: Path, backoff_base: float, selector: str,
                 node: bool = False) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.root = root
        self.backoff_base = backoff_base
        self.selector = selector
        host = urlparse(api.configuration.host)
        self.ctx = RuntimeContext(root=root, core=self.core, api_host=host.hostname or "127.0.0.1",
                                  api_port=host.port or 443, venv_bin=str(Path(sys.executable).parent),
                                  node_name=NODE_NAME if node else "")
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
            if finished(job) or job["metadata"].get("deletionTimestamp"):
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
        elif kind != "DELETED" and pod["spec"].get("nodeName") == self.ctx.node_name and self.ctx.node_name:
            # Bound here but no process (e.g. from before a runner restart): nothing to wait for.
            try:
                # Options go in the body (the API ignores query options when a body is sent).
                self.core.delete_namespaced_pod(pod["metadata"]["name"], pod["metadata"]["namespace"], body={
                    "gracePeriodSeconds": 0, "preconditions": {"uid": pod["metadata"]["uid"]}})
            except ApiException as exc:
                if exc.status not in (404, 409):
                    log.warning("cannot finish deleting pod %s: %s", pod["metadata"]["name"], exc.reason)

    def _stream(self, list_fn: Callable[..., Any], handler: Callable[[str, dict[str, Any]], None],
                selector: str, ready: threading.Event) -> None:
        """List then watch, forever; a 410 Gone or a broken stream re-lists."""
        while not self.stopping.is_set():
            try:
                data = as_json(list_fn(label_selector=selector, _preload_content=False))
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
        """One watch of at most a minute; the caller then re-lists, a resync like an informer's.

        The resync also restarts the worker of a Job whose worker died on an
        error (an API hiccup), so no unfinished Job is forgotten.
        """
        w = watch.Watch()
        for event in w.stream(list_fn, label_selector=selector, resource_version=rv, timeout_seconds=60,
                              allow_watch_bookmarks=True):
            obj = event["raw_object"]
            if event["type"] == "ERROR":
                if obj.get("code") == 410:
                    return
                raise RuntimeError(obj.get("message"))
            if event["type"] != "BOOKMARK":
                yield event["type"], obj

    def is_running(self, key: str) -> bool:
        with self.lock:
            return any(r.key == key and not r.done for r in self.pod_runs.values())

    def run(self) -> None:
        _clean_stale_pods(self.root)
        if self.ctx.node_name:
            # Port 0: the kernel picks a free one, and the Node object tells kube-apiserver.
            server = KubeletServer(self.root, 0, self.root / "pki", self.is_running)
            server.start()
            register_node(self.core, server.server_address[1])
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
    parser.add_argument("--node", action="store_true",
                        help="register Node edgeopt-local, bind Pods to it and serve their logs (kubectl logs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    api = config.new_client_from_config(config_file=args.kubeconfig)
    runner = JobRunner(api, args.dir.resolve(), args.backoff_base, args.selector, args.node)

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
