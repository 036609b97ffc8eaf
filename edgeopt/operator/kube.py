"""The few Kubernetes API calls the operator makes itself, with errors made ours.

Handlers never see ``ApiException``: a conflict on create means the object is
already there (a restart, or a concurrent worker) and is adopted; a missing
object is ``None``; throttling, 5xx and connection errors become a
``KubeError`` marked temporary so the handler retries; anything else is
permanent. Every call is counted by verb and resource (``calls``), which is
how the per-resource API cost is measured and exported as a metric.
Objects come back as plain camelCase dicts, the shape kopf and the builders use.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import HTTPError

from edgeopt.errors import EdgeoptError
from edgeopt.operator import kueue as kueue_api

GROUP, VERSION, PLURAL = "edgeopt.io", "v1alpha1", "optimizedmodels"
T = TypeVar("T")


class KubeError(EdgeoptError):
    """The Kubernetes API refused or failed a call; ``temporary`` says whether a retry may help."""

    reason = "KubernetesAPIError"

    def __init__(self, message: str, *, status: int | None = None, temporary: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.temporary = temporary


#: Connections kept to the API server: more than kopf's sync workers (handlers.py sets 16). With the
#: client's default (5 × CPUs: 10 here) every extra worker's connection was discarded after its call,
#: so 100 resources applied at once cost ~200 new TLS handshakes on the operator's critical path.
POOL_SIZE = 32


def load_api_client(pool_size: int = POOL_SIZE) -> client.ApiClient:
    """In-cluster config when running in a Pod, else the current kubeconfig ($KUBECONFIG)."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


def _error(exc: ApiException, what: str) -> KubeError:
    detail = exc.reason or ""
    try:
        detail = json.loads(exc.body or "{}").get("message") or detail
    except (ValueError, AttributeError):
        pass
    temporary = exc.status in (429, 500, 502, 503, 504) or exc.status is None or exc.status == 0
    return KubeError(f"{what}: {exc.status} {detail}", status=exc.status, temporary=temporary)


class Kube:
    """Thread-safe: kopf runs sync handlers in worker threads."""

    def __init__(self, api: client.ApiClient, *, namespaces: Iterable[str] = ()) -> None:
        self.api = api
        self.namespaces = tuple(namespaces)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.kueue = client.CustomObjectsApi(api)  # kueue.x-k8s.io (a name of its own for the RBAC test)
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self.on_call: Callable[[str, str], None] | None = None

    def _call(
        self, verb: str, resource: str, what: str, fn: Callable[..., Any], *args: Any, raw: bool = False, **kwargs: Any
    ) -> Any:
        """``raw``: the open response (a watch stream), not its parsed body."""
        with self._lock:
            self.calls[(verb, resource)] += 1
        if self.on_call:
            self.on_call(verb, resource)
        try:
            resp = fn(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            raise _error(exc, what) from exc
        except (HTTPError, OSError) as exc:
            raise KubeError(f"{what}: {exc}", temporary=True) from exc
        if raw:
            return resp
        return json.loads(resp.data or b"null")

    def _maybe(self, fn: Callable[[], T]) -> T | None:
        """None when the object is not there."""
        try:
            return fn()
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    # ------------------------------------------------------------------ OptimizedModels

    def read_model(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._maybe(
            lambda: self._call(
                "get",
                PLURAL,
                f"reading OptimizedModel {namespace}/{name}",
                self.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
            )
        )

    def patch_model_status(
        self, namespace: str, name: str, status: dict[str, Any], *, resource_version: str | None = None
    ) -> None:
        """Merge-patch the status; with ``resource_version``, only onto that very version (else a 409)."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        self._maybe(
            lambda: self._call(
                "patch",
                PLURAL + "/status",
                f"updating the status of OptimizedModel {namespace}/{name}",
                self.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body,
            )
        )

    # ------------------------------------------------------------------ Jobs and ConfigMaps

    def create_configmap(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create, or return the one a previous run of the operator made."""
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            return self._call(  # type: ignore[no-any-return]
                "create",
                "configmaps",
                f"creating ConfigMap {ns}/{name}",
                self.core.create_namespaced_config_map,
                ns,
                body,
            )
        except KubeError as exc:
            if exc.status != 409:
                raise
        return self._call(  # type: ignore[no-any-return]
            "get", "configmaps", f"reading ConfigMap {ns}/{name}", self.core.read_namespaced_config_map, name, ns
        )

    def create_job(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(job, created): a 409 means the Job for this generation exists already; adopt it."""
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            job = self._call("create", "jobs", f"creating Job {ns}/{name}", self.batch.create_namespaced_job, ns, body)
            return job, True
        except KubeError as exc:
            if exc.status != 409:
                raise
        job = self._call("get", "jobs", f"reading Job {ns}/{name}", self.batch.read_namespaced_job, name, ns)
        return job, False

    def list_jobs(self, selector: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Jobs matching ``selector`` in one namespace, else in every watched namespace (or all)."""
        namespaces: Iterable[str | None] = (namespace,) if namespace else (self.namespaces or (None,))
        items: list[dict[str, Any]] = []
        for ns in namespaces:
            if ns is None:
                resp = self._call(
                    "list", "jobs", "listing Jobs", self.batch.list_job_for_all_namespaces, label_selector=selector
                )
            else:
                resp = self._call(
                    "list", "jobs", f"listing Jobs in {ns}", self.batch.list_namespaced_job, ns, label_selector=selector
                )
            items.extend(resp.get("items") or [])
        return items

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and (in the background) its Pods; gone already is fine."""
        self._maybe(
            lambda: self._call(
                "delete",
                "jobs",
                f"deleting Job {namespace}/{name}",
                self.batch.delete_namespaced_job,
                name,
                namespace,
                propagation_policy="Background",
            )
        )

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        resp = self._call(
            "list",
            "pods",
            f"listing Pods in {namespace}",
            self.core.list_namespaced_pod,
            namespace,
            label_selector=selector,
        )
        return list(resp.get("items") or [])

    # ------------------------------------------------------------------ Triton's endpoints and Pods

    def list_endpointslices(self, namespace: str, selector: str) -> dict[str, Any]:
        """The EndpointSlice list (``items`` and ``metadata.resourceVersion``, where a watch starts)."""
        return self._call(  # type: ignore[no-any-return]
            "list",
            "endpointslices",
            f"listing the EndpointSlices of {selector} in {namespace}",
            self.discovery.list_namespaced_endpoint_slice,
            namespace,
            label_selector=selector,
        )

    def watch_endpointslices(
        self, namespace: str, selector: str, resource_version: str, timeout: int
    ) -> Iterator[dict[str, Any]]:
        """Watch events ({type, object}) until the server ends the watch after ``timeout`` seconds."""
        resp = self._call(
            "watch",
            "endpointslices",
            f"watching the EndpointSlices of {selector} in {namespace}",
            self.discovery.list_namespaced_endpoint_slice,
            namespace,
            label_selector=selector,
            watch=True,
            resource_version=resource_version,
            timeout_seconds=timeout,
            allow_watch_bookmarks=False,
            raw=True,
        )
        try:
            for line in iter_resp_lines(resp):
                yield json.loads(line)
        except (HTTPError, OSError, ValueError) as exc:
            raise KubeError(f"watching EndpointSlices in {namespace}: {exc}", temporary=True) from exc
        finally:
            resp.release_conn()

    def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._maybe(
            lambda: self._call(
                "get", "pods", f"reading Pod {namespace}/{name}", self.core.read_namespaced_pod, name, namespace
            )
        )

    def patch_pod_condition(
        self, namespace: str, name: str, condition: dict[str, Any], *, index: int | None, resource_version: str
    ) -> None:
        """Set one condition of a Pod's status (a readiness gate), onto exactly the Pod version that was read.

        A JSON patch: the condition at ``index`` is replaced (after testing that it is this type), or
        appended (``index`` None; -1: the Pod has no conditions yet); the resourceVersion test turns a
        concurrent kubelet write into a failed patch (the caller reads the Pod again later).
        """
        ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}]
        if index == -1:
            ops.append({"op": "add", "path": "/status/conditions", "value": [condition]})
        elif index is None:
            ops.append({"op": "add", "path": "/status/conditions/-", "value": condition})
        else:
            path = f"/status/conditions/{index}"
            ops += [
                {"op": "test", "path": f"{path}/type", "value": condition["type"]},
                {"op": "replace", "path": path, "value": condition},
            ]
        self._maybe(
            lambda: self._call(
                "patch",
                "pods/status",
                f"setting condition {condition['type']} of Pod {namespace}/{name}",
                self.core.patch_namespaced_pod_status,
                name,
                namespace,
                ops,
            )
        )

    def list_workloads(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Kueue Workloads (kueue.x-k8s.io) matching ``selector``: read-only, granted with ``kueue.enabled``."""
        resp = self._call(
            "list",
            "workloads",
            f"listing Kueue Workloads in {namespace}",
            self.kueue.list_namespaced_custom_object,
            kueue_api.GROUP,
            kueue_api.VERSION,
            namespace,
            kueue_api.PLURAL,
            label_selector=selector,
        )
        return list(resp.get("items") or [])
