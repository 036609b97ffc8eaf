"""The dev cluster's node agent: the kubelet's work for one local Node, and a volume provisioner.

kube-controller-manager runs the real controllers (Jobs, Deployments,
EndpointSlices, the persistentvolume-binder...) and kube-scheduler binds
Pods to the one Node, ``edgeopt-local``, which this process registers.  No
kubelet can run here (no CNI), so this process plays it for every Pod bound
to that Node (``--selector`` narrows it):

* a bound Pod runs as an OCI container with podman and runc (kubelet.py,
  podrun.py) from a local image (nothing is pulled: ``edgeopt-dev images``
  builds the Dockerfile's), at an address of its own with Service names in
  its /etc/hosts (podnet.py); its status is written as kubelet writes it
  (readiness gates included), a Pod being deleted has its container stopped
  and is then removed, and ``kubectl logs`` reads its output (node.py);
* each claim gets a hostPath PersistentVolume under the cluster folder
  (volumes.py), which the binder binds to it.

Pods bound here that are still Running when the agent starts lost their
container with the previous agent (it is removed): they are marked Failed
(reason ``Lost``), as a kubelet marks Pods of a node that came back without
them.

Run by ``edgeopt-dev up``: ``python -m edgeopt_dev.nodeagent --kubeconfig K --dir DIR``.
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
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from edgeopt_dev.kubelet import PodRun, now
from edgeopt_dev.layout import Layout
from edgeopt_dev.node import NODE_IP, NODE_NAME, KubeletServer, register_node
from edgeopt_dev.podnet import PodIPs, ServiceDirectory
from edgeopt_dev.podrun import remove_cluster_containers
from edgeopt_dev.podspec import RuntimeContext
from edgeopt_dev.volumes import Provisioner

log = logging.getLogger("edgeopt.nodeagent")
#: Pods of Jobs (the job controller's label), for ``--selector``; the default is every Pod.
JOB_PODS = "batch.kubernetes.io/controller-uid"
TERMINAL = ("Succeeded", "Failed")


class Informer:
    """List then watch one resource, forever; a 410 Gone or a broken stream re-lists (client-go's informer)."""

    def __init__(
        self,
        name: str,
        list_call: Callable[..., Any],
        listed: Callable[[list[dict[str, Any]]], None],
        event: Callable[[str, dict[str, Any]], None],
        stopping: threading.Event,
        synced: threading.Event,
        kwargs: dict[str, Any],
    ) -> None:
        self.name, self.list_call, self.listed, self.event = name, list_call, listed, event
        self.stopping, self.synced, self.kwargs = stopping, synced, kwargs

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                data = json.loads(self.list_call(_preload_content=False, **self.kwargs).data)
                self.listed(data["items"])
                self.synced.set()
                for kind, obj in self._events(data["metadata"]["resourceVersion"]):
                    self.event(kind, obj)
            except ApiException as exc:
                if exc.status != 410:
                    log.warning("watch %s: %s", self.name, exc.reason)
                    time.sleep(1)
            except Exception as exc:
                if self.stopping.is_set():
                    return
                log.warning("watch %s broke: %r", self.name, exc)
                time.sleep(1)

    def _events(self, rv: str) -> Iterator[tuple[str, dict[str, Any]]]:
        def raw(**kwargs: Any) -> Any:  # no docstring, so no return type: the watch keeps the objects as JSON
            return self.list_call(**kwargs)  # (the client's models refuse an EndpointSlice with no endpoints)

        w = watch.Watch()
        for event in w.stream(raw, resource_version=rv, timeout_seconds=60, allow_watch_bookmarks=True, **self.kwargs):
            obj = event["raw_object"]
            if event["type"] == "ERROR":
                if obj.get("code") == 410:
                    return
                raise RuntimeError(obj.get("message"))
            if event["type"] != "BOOKMARK":
                yield event["type"], obj


class NodeAgent:
    """Watches Pods; one PodRun thread per Pod it runs."""

    def __init__(self, api: client.ApiClient, root: Path, selector: str) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.root = root
        self.selector = selector
        host = urlparse(api.configuration.host)
        self.services = ServiceDirectory(self._services_changed)
        self.ctx = RuntimeContext(
            root=root,
            core=self.core,
            api_host=host.hostname or "127.0.0.1",
            api_port=host.port or 443,
            services=self.services,
        )
        self.ips = PodIPs()
        self.runs: dict[str, PodRun] = {}
        self.finished: set[str] = set()  # uids run to the end: a stale event never starts them again
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.started = False  # after the first list: Pods bound before that lost their process

    def pod_done(self, run: PodRun) -> None:
        with self.lock:
            self.runs.pop(run.uid, None)
            self.finished.add(run.uid)
        self.ips.release(run.uid)

    def _services_changed(self) -> None:
        with self.lock:
            runs = list(self.runs.values())
        for run in runs:
            run.update_hosts()

    def on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
        uid = meta["uid"]
        with self.lock:
            run = self.runs.get(uid)
        node = spec.get("nodeName")
        if kind == "DELETED" or meta.get("deletionTimestamp"):
            if run is not None:
                grace = meta.get("deletionGracePeriodSeconds")
                if grace is None:
                    grace = spec.get("terminationGracePeriodSeconds", 30)
                run.stop("Pod deleted", grace=float(grace))
            elif kind != "DELETED" and node == NODE_NAME:
                self._finish_deletion(pod)
            return
        if run is not None:
            run.observe(pod)
            return
        if status.get("phase") in TERMINAL or node != NODE_NAME:  # unbound: kube-scheduler's to place
            return
        if self.stopping.is_set():  # the node is going away: it takes no new Pod
            return
        if node == NODE_NAME and not self.started and status.get("phase") == "Running":
            self._mark_lost(pod)
            return
        with self.lock:
            if uid in self.runs or uid in self.finished:
                return
            # hostNetwork: the node's address, as a kubelet gives it; every other Pod an address of its own.
            ip = NODE_IP if spec.get("hostNetwork") else self.ips.allocate(uid)
            run = PodRun(pod, self.ctx, self.pod_done, ip)
            self.runs[uid] = run
        log.info("pod %s/%s: taking it", meta["namespace"], meta["name"])
        run.start()

    def _finish_deletion(self, pod: dict[str, Any]) -> None:
        """Bound here but no process (e.g. from before a restart): nothing to wait for, as kubelet would."""
        try:
            # Options go in the body (the API ignores query options when a body is sent).
            self.core.delete_namespaced_pod(
                pod["metadata"]["name"],
                pod["metadata"]["namespace"],
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": pod["metadata"]["uid"]}},
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("cannot finish deleting pod %s: %s", pod["metadata"]["name"], exc.reason)

    def _mark_lost(self, pod: dict[str, Any]) -> None:
        status = pod.setdefault("status", {})
        status.update(phase="Failed", reason="Lost", message="the edgeopt node agent restarted and lost this process")
        for cs in status.get("containerStatuses") or []:
            cs["state"] = {
                "terminated": {
                    "exitCode": 137,
                    "reason": "Error",
                    "startedAt": now(),
                    "finishedAt": now(),
                    "message": "lost with the node agent",
                }
            }
        try:
            self.core.replace_namespaced_pod_status(pod["metadata"]["name"], pod["metadata"]["namespace"], pod)
        except ApiException as exc:
            log.warning("cannot mark lost pod %s failed: %s", pod["metadata"]["name"], exc.reason)

    def _pods_listed(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            self.on_pod("ADDED", item)
        self.started = True

    def is_running(self, key: str) -> bool:
        with self.lock:
            return any(r.key == key and not r.done for r in self.runs.values())

    def run(self) -> None:
        for name in remove_cluster_containers(self.root):
            log.info("removed container %s, lost with the previous node agent", name)
        # Port 0: the kernel picks a free one, and the Node object tells kube-apiserver.
        server = KubeletServer(self.root, 0, self.root / "pki", self.is_running)
        server.start()
        register_node(self.core, server.server_address[1], self.root)
        discovery = client.DiscoveryV1Api(self.api)
        volumes = Provisioner(self.core, self.root)
        watches = ("persistentvolumes", "persistentvolumeclaims", "services", "endpointslices", "pods")
        synced = {name: threading.Event() for name in watches}
        for name, list_call, listed, event, kwargs in (
            ("persistentvolumes", self.core.list_persistent_volume, volumes.volumes_listed, volumes.volume_event, {}),
            (
                "persistentvolumeclaims",
                self.core.list_persistent_volume_claim_for_all_namespaces,
                volumes.claims_listed,
                volumes.claim_event,
                {},
            ),
            (
                "services",
                self.core.list_service_for_all_namespaces,
                self.services.services_listed,
                self.services.service_event,
                {},
            ),
            (
                "endpointslices",
                discovery.list_endpoint_slice_for_all_namespaces,
                self.services.slices_listed,
                self.services.slice_event,
                {},
            ),
            (
                "pods",
                self.core.list_pod_for_all_namespaces,
                self._pods_listed,
                self.on_pod,
                {"label_selector": self.selector},
            ),
        ):
            informer = Informer(name, list_call, listed, event, self.stopping, synced[name], kwargs)
            threading.Thread(target=informer.run, name=f"watch-{name}", daemon=True).start()
        while not all(e.wait(0.2) for e in synced.values()):
            if self.stopping.is_set():
                return
        Layout(self.root).node_ready.write_text(f"{now()}\n")
        log.info(
            "node agent ready: %s on node %s", f"Pods with {self.selector}" if self.selector else "every Pod", NODE_NAME
        )
        self.stopping.wait()

    def shutdown(self) -> None:
        """Stop every Pod's container (the node is going away) and report them Failed."""
        self.stopping.set()
        with self.lock:
            runs = list(self.runs.values())
        for run in runs:
            run.stop("node agent stopping", grace=5.0)
        for run in runs:
            run.thread.join(timeout=15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeopt_dev.nodeagent", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--dir", required=True, type=Path, help="the control plane folder (PVCs, logs, pid files)")
    parser.add_argument(
        "--selector",
        default="",
        help=f"label selector of the Pods this node runs (default: all; {JOB_PODS}: Jobs' only)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    api = config.new_client_from_config(config_file=args.kubeconfig)
    agent = NodeAgent(api, args.dir.resolve(), args.selector)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        agent.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.run()
    agent.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
