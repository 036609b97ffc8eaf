"""The operator's settings: one typed object, read from ``EDGEOPT_*`` at start-up.

Everything the chart can tune arrives here as an environment variable, is
parsed and validated once, and is then passed around as a frozen object, so a
typo in the chart fails the operator at start with the variable's name instead
of failing the first conversion. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from edgeopt import __version__
from edgeopt.errors import SpecError
from edgeopt.limits import Limits
from edgeopt.operator.endpoints import parse_service
from edgeopt.spec import QUEUE_NAME_PATTERN

PREFIX = "EDGEOPT_"
#: The chart's own converter image (charts/edgeopt converter.image; test_chart checks they agree).
DEFAULT_CONVERTER_IMAGE = f"ghcr.io/edgeopt/edgeopt-converter:{__version__}"
#: One GPU: TF-TRT engines are built on the kind of GPU that will serve them.
DEFAULT_RESOURCES: dict[str, Any] = {"limits": {"nvidia.com/gpu": 1}}
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)


class SettingsError(SpecError):
    """An EDGEOPT_* variable is malformed; the message names it."""

    reason = "InvalidSettings"


@dataclass(frozen=True)
class OperatorSettings:
    """What the operator needs to know that is not in an OptimizedModel.

    Each field maps to ``EDGEOPT_<FIELD NAME IN CAPITALS>``; the per-resource
    ``spec.converter`` wins over the ``converter_*`` and ``job_*`` defaults.
    """

    #: Namespaces to watch (comma list); empty = the whole cluster.
    namespaces: tuple[str, ...] = ()
    #: Image the conversion Job runs (``edgeopt convert``); NGC TensorFlow based on GPU nodes.
    converter_image: str = DEFAULT_CONVERTER_IMAGE
    #: Container resources for the converter (JSON). ``{}`` = none (CPU-only clusters, local tests).
    converter_resources: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    #: Default nodeSelector (JSON object of strings), e.g. a GPU product label.
    converter_node_selector: Mapping[str, str] = field(default_factory=dict)
    #: Default tolerations (JSON list), e.g. for tainted GPU nodes.
    converter_tolerations: tuple[Mapping[str, Any], ...] = ()
    #: Default Kueue LocalQueue for conversion Jobs (spec.converter.queueName wins); empty = the operator's own slots.
    converter_queue_name: str | None = None
    #: Default runtimeClassName (e.g. ``nvidia``); empty = the cluster default.
    converter_runtime_class: str | None = None
    #: UID the converter runs as (non-root); must be able to write the repository PVC.
    converter_run_as_user: int = 1000
    #: Job activeDeadlineSeconds: a conversion that takes longer is stopped and Failed.
    job_active_deadline_seconds: int = 3600
    #: Job backoffLimit. Spec and input errors never retry (a podFailurePolicy ends the Job).
    job_backoff_limit: int = 2
    #: Job ttlSecondsAfterFinished; the resource's status keeps the result after the Job is gone.
    job_ttl_seconds: int = 3600
    #: GPU conversions allowed to run at once per GPU kind (extended resource, and product
    #: nodeSelector where set): GPUs are scarce. Others of that kind wait in Pending, first in, first out.
    max_concurrent_conversions: int = 1
    #: Per-kind limits over ``max_concurrent_conversions`` (JSON list of {resource, product?, max}).
    gpu_conversion_limits: tuple[Mapping[str, Any], ...] = ()
    #: Conversions that request no GPU allowed to run at once; they never wait for a GPU slot.
    max_concurrent_cpu_conversions: int = 4
    #: A Pod Unschedulable or in image-pull back-off this long gives its slot to the next in queue.
    capacity_stall_seconds: float = 300.0
    #: How often a resource waiting for capacity re-checks, in seconds.
    capacity_poll_seconds: float = 5.0
    #: How often a queue-managed Job still suspended has its Kueue Workload re-read, in seconds
    #: (a Workload changing does not touch its Job, so no Job event says so).
    kueue_poll_seconds: float = 10.0
    #: Triton HTTP endpoint used when spec.serving.tritonURL is empty; empty = do not load.
    triton_url: str | None = None
    #: The Service in front of Triton (``namespace/name``): the operator loads into every endpoint of its
    #: EndpointSlices, for resources that use the default triton_url. Empty: triton_url is one endpoint.
    triton_service: str | None = None
    #: Set the ``edgeopt.io/models-loaded`` readiness gate on the Service's Pods (they must declare it).
    triton_readiness_gate: bool = False
    #: Seconds between audits of what every Triton endpoint serves (endpoint changes trigger one at once).
    serving_audit_seconds: float = 30.0
    #: Loads the serving reconcile runs at once, over all endpoints (a fresh replica loads in name order).
    serving_load_parallelism: int = 4
    #: Timeout for each Triton call (load, ready, inference, unload), in seconds.
    triton_timeout_seconds: float = 30.0
    #: Delay before retrying an unreachable Triton, in seconds (doubles up to 10x).
    serving_backoff_seconds: float = 5.0
    #: Loads Triton refuses (LoadFailed) or that fail the smoke inference (SmokeTestFailed) before
    #: the resource is Failed. An unreachable Triton (TritonUnavailable) is retried without limit.
    serving_max_attempts: int = 5
    #: kopf peering object for active/standby replicas; empty = standalone.
    peering_name: str | None = None
    #: kopf peering priority: the highest-priority replica reconciles, the others stand by.
    priority: int = 0
    #: Seconds a silent replica counts as alive; a standby takes over at most this long after a crash.
    peering_lifetime_seconds: int = 60
    #: Port of the liveness endpoint (``/healthz``); 0 = off.
    liveness_port: int = 8080
    #: Port of the Prometheus metrics endpoint (``/metrics``); 0 = off.
    metrics_port: int = 9090

    # Tenancy: what a tenant may choose in spec.converter / spec.serving. Whoever may create an
    # OptimizedModel would otherwise pick the image, the node and the Triton the operator talks to.
    # Each list is added to the operator's own default (converter_image, converter_tolerations,
    # converter_runtime_class, triton_url), which is always allowed; an empty list allows only that.
    #: Further converter images a spec may name (comma list); ``PREFIX*`` allows every image under a prefix.
    allowed_converter_images: tuple[str, ...] = ()
    #: Further tolerations a spec may carry (JSON list), each matched exactly (key, operator, value, effect).
    allowed_tolerations: tuple[Mapping[str, Any], ...] = ()
    #: Further runtimeClassNames a spec may name (comma list).
    allowed_runtime_classes: tuple[str, ...] = ()
    #: Further Triton URLs a spec may name in serving.tritonURL (comma list, exact, trailing ``/`` ignored).
    allowed_triton_urls: tuple[str, ...] = ()
    #: Ops the converter's graph policy refuses that this cluster allows for trusted models (comma list);
    #: forwarded to every conversion Job. Never settable from a resource's spec.
    converter_allowed_ops: tuple[str, ...] = ()
    #: Size caps on untrusted input (``EDGEOPT_LIMIT_*``, see edgeopt/limits.py); forwarded to every Job.
    limits: Limits = field(default_factory=Limits)
    #: Largest smoke-test request (bytes) built from a Triton model config; larger inputs skip the request.
    smoke_input_max_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        for ns in self.namespaces:
            if not _NAMESPACE.match(ns):
                raise SettingsError(f"{PREFIX}NAMESPACES: {ns!r} is not a valid namespace name")
        if not self.converter_image:
            raise SettingsError(f"{PREFIX}CONVERTER_IMAGE: must not be empty")
        for key in (
            "max_concurrent_conversions",
            "max_concurrent_cpu_conversions",
            "job_active_deadline_seconds",
            "serving_max_attempts",
            "serving_load_parallelism",
        ):
            if getattr(self, key) < 1:
                raise SettingsError(f"{PREFIX}{key.upper()}: must be >= 1, got {getattr(self, key)}")
        if self.peering_lifetime_seconds < 5:
            raise SettingsError(f"{PREFIX}PEERING_LIFETIME_SECONDS: must be >= 5, got {self.peering_lifetime_seconds}")
        for key in ("job_backoff_limit", "job_ttl_seconds", "converter_run_as_user"):
            if getattr(self, key) < 0:
                raise SettingsError(f"{PREFIX}{key.upper()}: must be >= 0, got {getattr(self, key)}")
        if self.converter_run_as_user == 0:
            raise SettingsError(f"{PREFIX}CONVERTER_RUN_AS_USER: the converter must not run as root")
        for key in ("liveness_port", "metrics_port"):
            if not 0 <= getattr(self, key) <= 65535:
                raise SettingsError(f"{PREFIX}{key.upper()}: {getattr(self, key)} is not a port")
        for key in (
            "triton_timeout_seconds",
            "serving_backoff_seconds",
            "capacity_poll_seconds",
            "capacity_stall_seconds",
            "kueue_poll_seconds",
            "serving_audit_seconds",
        ):
            if getattr(self, key) <= 0:
                raise SettingsError(f"{PREFIX}{key.upper()}: must be > 0, got {getattr(self, key)}")
        if self.triton_url and not re.match(r"^https?://", self.triton_url):
            raise SettingsError(f"{PREFIX}TRITON_URL: {self.triton_url!r} must start with http:// or https://")
        if self.triton_service:
            if not self.triton_url:
                raise SettingsError(f"{PREFIX}TRITON_SERVICE needs {PREFIX}TRITON_URL (the Service's own URL)")
            try:
                parse_service(self.triton_service)
            except SpecError as exc:
                raise SettingsError(f"{PREFIX}TRITON_SERVICE: {exc}") from exc
        if not isinstance(self.converter_resources, Mapping):
            raise SettingsError(f"{PREFIX}CONVERTER_RESOURCES: must be a JSON object")
        if not all(isinstance(v, str) for v in self.converter_node_selector.values()):
            raise SettingsError(f"{PREFIX}CONVERTER_NODE_SELECTOR: values must be strings")
        self._check_allow_lists()
        self._check_gpu_limits()

    def _check_gpu_limits(self) -> None:
        name = f"{PREFIX}GPU_CONVERSION_LIMITS"
        for entry in self.gpu_conversion_limits:
            if not isinstance(entry.get("resource"), str) or not entry["resource"]:
                raise SettingsError(f"{name}: {dict(entry)} needs a resource, e.g. nvidia.com/gpu")
            if not isinstance(entry.get("product", ""), str):
                raise SettingsError(f"{name}: product must be a string in {dict(entry)}")
            if not isinstance(entry.get("max"), int) or isinstance(entry["max"], bool) or entry["max"] < 1:
                raise SettingsError(f"{name}: max must be an integer >= 1 in {dict(entry)}")
        if self.converter_queue_name is not None and not _QUEUE_NAME.match(self.converter_queue_name):
            raise SettingsError(f"{PREFIX}CONVERTER_QUEUE_NAME: {self.converter_queue_name!r} is not a LocalQueue name")

    def conversion_limit(self, resource: str, product: str) -> int:
        """How many conversions of one slot class run at once: "" resource = no GPU."""
        if not resource:
            return self.max_concurrent_cpu_conversions
        matches = [e for e in self.gpu_conversion_limits if e["resource"] == resource]
        exact = [e for e in matches if e.get("product", "") == product]
        anyproduct = [e for e in matches if not e.get("product")]
        for found in (exact, anyproduct):
            if found:
                return int(found[0]["max"])
        return self.max_concurrent_conversions

    def _check_allow_lists(self) -> None:
        for image in self.allowed_converter_images:
            if not image or image == "*" or any(c.isspace() for c in image):
                raise SettingsError(
                    f"{PREFIX}ALLOWED_CONVERTER_IMAGES: {image!r} is not an image or an image prefix ending in '*'"
                    " (a bare '*' would let every tenant run any image)"
                )
        for url in self.allowed_triton_urls:
            if not re.match(r"^https?://[^/\s]+", url):
                raise SettingsError(f"{PREFIX}ALLOWED_TRITON_URLS: {url!r} must start with http:// or https://")
        for name in self.allowed_runtime_classes:
            if not _NAMESPACE.match(name):
                raise SettingsError(f"{PREFIX}ALLOWED_RUNTIME_CLASSES: {name!r} is not a valid RuntimeClass name")
        if self.smoke_input_max_bytes < 1:
            raise SettingsError(f"{PREFIX}SMOKE_INPUT_MAX_BYTES: must be >= 1, got {self.smoke_input_max_bytes}")

    def converter_images(self) -> tuple[str, ...]:
        """Every converter image (or ``prefix*``) a Job may run: the default first."""
        return (self.converter_image, *(i for i in self.allowed_converter_images if i != self.converter_image))

    def tolerations_allowed(self) -> tuple[Mapping[str, Any], ...]:
        return (*self.converter_tolerations, *self.allowed_tolerations)

    def runtime_classes(self) -> tuple[str, ...]:
        own = (self.converter_runtime_class,) if self.converter_runtime_class else ()
        return (*own, *(c for c in self.allowed_runtime_classes if c not in own))

    def triton_urls(self) -> tuple[str, ...]:
        own = (self.triton_url,) if self.triton_url else ()
        return (*own, *(u for u in self.allowed_triton_urls if u not in own))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        """Read every ``EDGEOPT_*`` variable that names a field; unset or empty = the default."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        try:
            values["limits"] = Limits.from_env(env)
        except SpecError as exc:
            raise SettingsError(str(exc)) from exc
        for f in fields(cls):
            if f.name == "limits":
                continue
            name = PREFIX + f.name.upper()
            raw = env.get(name, "").strip()
            if raw:
                values[f.name] = _parse(name, f.name, raw)
        return cls(**values)

    def with_overrides(self, **changes: Any) -> OperatorSettings:
        """Command-line flags win over the environment; None means "not given"."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _parse(name: str, key: str, raw: str) -> Any:
    try:
        if key == "namespaces":
            return tuple(ns.strip() for ns in raw.split(",") if ns.strip())
        if key in ("converter_resources", "converter_node_selector"):
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("must be a JSON object")
            return value
        if key in (
            "allowed_converter_images",
            "allowed_runtime_classes",
            "allowed_triton_urls",
            "converter_allowed_ops",
        ):
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        if key in ("converter_tolerations", "allowed_tolerations", "gpu_conversion_limits"):
            value = json.loads(raw)
            if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
                raise ValueError("must be a JSON list of objects")
            return tuple(value)
        if key.endswith("_seconds") and key.startswith(("triton_", "serving_", "capacity_")):
            return float(raw)
        if key in (
            "converter_image",
            "converter_runtime_class",
            "triton_url",
            "peering_name",
            "converter_queue_name",
            "triton_service",
        ):
            return raw
        if key == "triton_readiness_gate":
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError("must be true or false")
            return raw.lower() in ("true", "1")
        return int(raw)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise SettingsError(f"{name}: {raw!r} is not valid ({exc})") from exc
