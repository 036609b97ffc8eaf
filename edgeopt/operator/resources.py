"""What the operator creates, as plain data: the conversion Job and its ConfigMap.

Pure functions, unit-tested without a cluster: ``kube`` applies what these
return. The Job name is a function of (name, generation, uid) only, so an
operator that restarts at any point finds the Job it already made instead of
making a second one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import yaml

from edgeopt.artifact import KEPT_VERSIONS_ENV, SERVING_VERSIONS_ENV
from edgeopt.limits import ALLOWED_OPS_ENV
from edgeopt.operator import kueue
from edgeopt.operator.settings import OperatorSettings
from edgeopt.spec import API_VERSION, DEFAULT_PVC_ROOT, KIND, PVC_ROOT_ENV, OptimizedModel, pvc_claim
from edgeopt.triton.ownership import OWNER_UID_ENV

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "edgeopt"
MODEL_LABEL = "edgeopt.io/model"
GENERATION_LABEL = "edgeopt.io/generation"
JOB_LABEL = "edgeopt.io/job"
UID_LABEL = "edgeopt.io/uid"
#: ``cleanup`` marks the Job that removes published files (deletionPolicy: Delete).
PURPOSE_LABEL = "edgeopt.io/purpose"
MODEL_NAME_ANNOTATION = "edgeopt.io/model-name"
#: The OptimizedModel's full metadata.name: labels are cut at 63 characters, names may be 253.
RESOURCE_ANNOTATION = "edgeopt.io/resource-name"

CONTAINER_NAME = "convert"
MANIFEST_DIR = "/etc/edgeopt"
MANIFEST_FILE = "model.yaml"
COMMAND = ["edgeopt", "convert", "-f", f"{MANIFEST_DIR}/{MANIFEST_FILE}"]
#: The clean-up Job's command: removes a model directory only if its owner record names the resource.
REMOVE_COMMAND = ["python", "-m", "edgeopt.triton.ownership", "remove"]
#: Exit codes of errors that a retry cannot fix (spec, input, conversion, TRT, validation, publish).
PERMANENT_EXIT_CODES = [2, 3, 4, 5, 6, 7]
MAX_NAME = 63


def managed_selector() -> str:
    return f"{MANAGED_BY}={MANAGED_BY_VALUE}"


def job_name(name: str, generation: int, uid: str) -> str:
    """``<name>-g<generation>-<6 hex of the uid>``, at most 63 characters.

    The uid hash keeps a re-created resource with the same name from adopting
    the Job of its predecessor; the generation gives each spec change its Job.
    """
    suffix = f"-g{generation}-{hashlib.sha256(uid.encode()).hexdigest()[:6]}"
    stem = re.sub(r"[^a-z0-9-]", "-", name.lower())[: MAX_NAME - len(suffix)].strip("-") or "model"
    return stem + suffix


def model_labels(name: str, generation: int, uid: str) -> dict[str, str]:
    return {
        MANAGED_BY: MANAGED_BY_VALUE,
        "app.kubernetes.io/name": "edgeopt-converter",
        "app.kubernetes.io/component": "converter",
        MODEL_LABEL: name[:MAX_NAME].rstrip("-."),
        GENERATION_LABEL: str(generation),
        UID_LABEL: uid,
    }


def converter_manifest(model: OptimizedModel, spec: dict[str, Any]) -> str:
    """The YAML the converter reads: the resource as the user applied it (with CRD defaults)."""
    doc = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": model.name, **({"namespace": model.namespace} if model.namespace else {})},
        "spec": spec,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def manifest_configmap(
    model: OptimizedModel, spec: dict[str, Any], *, name: str, generation: int, uid: str
) -> dict[str, Any]:
    """The ConfigMap mounted at /etc/edgeopt: the converter runs on the very YAML that was applied."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": model.namespace,
            "labels": model_labels(model.name, generation, uid),
        },
        "data": {MANIFEST_FILE: converter_manifest(model, spec)},
    }


def _versions_env(name: str, versions: list[int] | None) -> list[dict[str, str]]:
    return [{"name": name, "value": ",".join(str(v) for v in sorted(set(versions)))}] if versions else []


def _volume_name(index: int, claim: str) -> str:
    return f"pvc-{index}-{claim}"[:MAX_NAME].rstrip("-")


def pvc_claims(model: OptimizedModel) -> dict[str, bool]:
    """Claims the Job mounts, each mapped to whether it must be writable (only the repository)."""
    claims: dict[str, bool] = {}
    spec = model.spec
    cal = spec.tensorrt.calibration
    for uri, writable in ((spec.source.uri, False), (cal.uri if cal else None, False), (spec.target.repository, True)):
        claim = pvc_claim(uri)
        if claim:
            claims[claim] = claims.get(claim, False) or writable
    return claims


def read_claims(model: OptimizedModel) -> set[str]:
    """Claims the converter reads (source, calibration): mounted whole and read-only."""
    spec = model.spec
    cal = spec.tensorrt.calibration
    return {c for c in (pvc_claim(spec.source.uri), pvc_claim(cal.uri if cal else None)) if c}


def model_subpath(model: OptimizedModel) -> str | None:
    """The model's own directory inside the repository claim (``<path>/<modelName>``), or None (file://).

    The converter mounts only this, read-write, as a ``subPath``: a compromised
    converter cannot reach another model's files or the ``model.py`` Triton runs.
    """
    repo = model.spec.target.repository
    claim = pvc_claim(repo)
    if not claim:
        return None
    sub = repo[len("pvc://") + len(claim) :].strip("/")
    return "/".join(p for p in (sub, model.model_name) if p)


def _claim_mounts(model: OptimizedModel) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumeMounts, volumes) for the claims: sources whole and read-only, the repository by subPath only."""
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    reads = read_claims(model)
    repo_claim = pvc_claim(model.spec.target.repository)
    subpath = model_subpath(model)
    for i, (claim, writable) in enumerate(sorted(pvc_claims(model).items())):
        vol = _volume_name(i, claim)
        volumes.append({"name": vol, "persistentVolumeClaim": {"claimName": claim, "readOnly": not writable}})
        root = f"{DEFAULT_PVC_ROOT}/{claim}"
        if claim in reads:  # first: the model's own mount below nests inside this one
            mounts.append({"name": vol, "mountPath": root, "readOnly": True})
        if claim == repo_claim and subpath:
            mounts.append({"name": vol, "mountPath": f"{root}/{subpath}", "subPath": subpath, "readOnly": False})
    return mounts, volumes


def _pod_spec(container: dict[str, Any], volumes: list[dict[str, Any]], uid_gid: int) -> dict[str, Any]:
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # the converter never talks to the API
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid_gid,
            "runAsGroup": uid_gid,
            "fsGroup": uid_gid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }


def _locked_down() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }


def cleanup_job(model: OptimizedModel, settings: OperatorSettings, *, uid: str) -> dict[str, Any] | None:
    """The Job that removes a deleted resource's published model (``deletionPolicy: Delete``).

    The operator never touches model files itself; like the converter, this
    runs next to the repository claim. No owner reference: the resource is
    going away, and its Job must outlive it. None when the repository is not
    a ``pvc://`` claim (a ``file://`` repository is the local user's own folder).
    """
    claim = pvc_claim(model.spec.target.repository)
    subpath = model_subpath(model)
    if not claim or not subpath:
        return None
    parent, _, model_dir = subpath.rpartition("/")
    mount = "/".join(p for p in (DEFAULT_PVC_ROOT, claim, parent) if p)
    suffix = f"-cleanup-{hashlib.sha256(uid.encode()).hexdigest()[:6]}"
    name = re.sub(r"[^a-z0-9-]", "-", model.name.lower())[: MAX_NAME - len(suffix)].strip("-") + suffix
    labels = {**model_labels(model.name, 0, uid), PURPOSE_LABEL: "cleanup"}
    container = {
        "name": "cleanup",
        # The operator's own image, whatever the spec says: this Job runs the operator's command only.
        "image": settings.converter_image,
        "imagePullPolicy": "IfNotPresent",
        "command": [
            *REMOVE_COMMAND,
            "--namespace",
            model.namespace or "",
            "--name",
            model.name,
            "--uid",
            uid,
            f"{mount}/{model_dir}",
        ],
        "resources": {},
        # The directory holding the model's folder (removing a folder needs its parent), and only that.
        "volumeMounts": [{"name": "repository", "mountPath": mount, **({"subPath": parent} if parent else {})}],
        "securityContext": _locked_down(),
    }
    volumes = [{"name": "repository", "persistentVolumeClaim": {"claimName": claim}}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": model.namespace, "labels": labels},
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": 600,
            "ttlSecondsAfterFinished": settings.job_ttl_seconds,
            "template": {
                "metadata": {"labels": {**labels, JOB_LABEL: name}},
                "spec": _pod_spec(container, volumes, settings.converter_run_as_user),
            },
        },
    }


#: Extended resources that are GPUs: a CPU-only conversion does not ask for them by default.
GPU_RESOURCES = ("nvidia.com/gpu",)


def default_resources(model: OptimizedModel, settings: OperatorSettings) -> dict[str, Any]:
    """The operator's default container resources, without a GPU when the model needs none.

    ``target.device: CPU`` with TensorRT off (the CPU-only edge path: ONNX Runtime
    on CPU, FP32/FP16/INT8) never touches a GPU; asking for one would leave the
    Job Unschedulable on exactly the GPU-less nodes it is meant for.
    """
    res = {k: dict(v) if isinstance(v, Mapping) else v for k, v in settings.converter_resources.items()}
    if model.spec.target.device == "CPU" and not model.spec.tensorrt.enabled:
        for section in ("requests", "limits"):
            if isinstance(res.get(section), dict):
                for gpu in GPU_RESOURCES:
                    res[section].pop(gpu, None)
    return res


def job_resources(model: OptimizedModel, settings: OperatorSettings) -> dict[str, Any]:
    """The converter container's resources: the spec's, else the operator's default for this model."""
    conv = model.spec.converter
    return dict(conv.resources) if conv.resources is not None else default_resources(model, settings)


def job_node_selector(model: OptimizedModel, settings: OperatorSettings) -> dict[str, str]:
    conv = model.spec.converter
    return dict(conv.node_selector) if conv.node_selector is not None else dict(settings.converter_node_selector)


def conversion_job(
    model: OptimizedModel,
    settings: OperatorSettings,
    *,
    name: str,
    generation: int,
    uid: str,
    configmap: str,
    serving_versions: list[int] | None = None,
    kept_versions: list[int] | None = None,
    queue_name: str | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job that runs ``edgeopt convert`` once for one (uid, generation).

    With a ``queue_name`` the Job is Kueue's to admit: created suspended and
    labelled with that LocalQueue (``kueue.queue_job``).

    ``serving_versions`` (what Triton serves now) travel to the publisher so its
    pruning never deletes a version Triton still has loaded.

    ``spec.converter`` wins over the operator's defaults, once ``tenancy`` has
    checked it against the allow-lists. The repository claim is mounted only at
    the model's own directory (``model_subpath``). The converter reports
    through its termination message; FallbackToLogsOnError keeps the log tail
    when it dies before writing one (OOM, a crash in TensorFlow).
    """
    labels = model_labels(model.name, generation, uid)
    claim_mounts, claim_volumes = _claim_mounts(model)
    container = _converter_container(model, settings, uid, claim_mounts, (serving_versions, kept_versions))
    pod_spec = _job_pod_spec(model, settings, container, configmap, claim_volumes)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": model.namespace,
            "labels": labels,
            "annotations": {MODEL_NAME_ANNOTATION: model.model_name, RESOURCE_ANNOTATION: model.name},
        },
        "spec": {
            **_job_limits(model, settings),
            "podFailurePolicy": _pod_failure_policy(),
            "template": {
                "metadata": {"labels": {**labels, JOB_LABEL: name}, "annotations": {RESOURCE_ANNOTATION: model.name}},
                "spec": pod_spec,
            },
        },
    }
    return kueue.queue_job(job, queue_name) if queue_name else job


def _pod_failure_policy() -> dict[str, Any]:
    """An evicted or preempted Pod (node drain, pressure) is retried, not counted; a permanent exit ends the Job."""
    return {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER_NAME,
                    "operator": "In",
                    "values": list(PERMANENT_EXIT_CODES),
                },
            },
        ]
    }


def _job_limits(model: OptimizedModel, settings: OperatorSettings) -> dict[str, Any]:
    """backoffLimit, activeDeadlineSeconds, ttlSecondsAfterFinished: ``spec.converter`` over the settings."""
    conv = model.spec.converter
    ttl = conv.ttl_seconds_after_finished
    return {
        "backoffLimit": conv.backoff_limit if conv.backoff_limit is not None else settings.job_backoff_limit,
        "activeDeadlineSeconds": conv.active_deadline_seconds or settings.job_active_deadline_seconds,
        "ttlSecondsAfterFinished": ttl if ttl is not None else settings.job_ttl_seconds,
    }


def _converter_env(
    settings: OperatorSettings, uid: str, serving_versions: list[int] | None, kept_versions: list[int] | None
) -> list[dict[str, Any]]:
    return [
        {"name": PVC_ROOT_ENV, "value": DEFAULT_PVC_ROOT},
        {"name": "HOME", "value": "/tmp"},  # TF and Keras write caches under $HOME
        {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "1"},
        {"name": OWNER_UID_ENV, "value": uid},  # the owner record of the model directory
        # The cluster admin's graph-policy exceptions and size caps: operator settings, never the spec.
        *(
            [{"name": ALLOWED_OPS_ENV, "value": ",".join(settings.converter_allowed_ops)}]
            if settings.converter_allowed_ops
            else []
        ),
        *({"name": k, "value": v} for k, v in settings.limits.as_env().items()),
        *_versions_env(SERVING_VERSIONS_ENV, serving_versions),
        *_versions_env(KEPT_VERSIONS_ENV, kept_versions),
    ]


def _converter_container(
    model: OptimizedModel,
    settings: OperatorSettings,
    uid: str,
    claim_mounts: list[dict[str, Any]],
    versions: tuple[list[int] | None, list[int] | None],
) -> dict[str, Any]:
    """The ``edgeopt convert`` container; ``versions``: (serving, kept) for the publisher's pruning."""
    return {
        "name": CONTAINER_NAME,
        "image": model.spec.converter.image or settings.converter_image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(COMMAND),
        "env": _converter_env(settings, uid, *versions),
        "resources": job_resources(model, settings),
        "volumeMounts": [
            {"name": "manifest", "mountPath": MANIFEST_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            *claim_mounts,
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": _locked_down(),
    }


def _job_pod_spec(
    model: OptimizedModel,
    settings: OperatorSettings,
    container: dict[str, Any],
    configmap: str,
    claim_volumes: list[dict[str, Any]],
) -> dict[str, Any]:
    """The Pod: volumes, and where it may run (``spec.converter`` over the settings)."""
    conv = model.spec.converter
    volumes = [{"name": "manifest", "configMap": {"name": configmap}}, {"name": "tmp", "emptyDir": {}}, *claim_volumes]
    pod_spec = _pod_spec(container, volumes, settings.converter_run_as_user)
    node_selector = job_node_selector(model, settings)
    tolerations = (
        conv.tolerations if conv.tolerations is not None else [dict(t) for t in settings.converter_tolerations]
    )
    runtime_class = conv.runtime_class_name or settings.converter_runtime_class
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if runtime_class:
        pod_spec["runtimeClassName"] = runtime_class
    return pod_spec
