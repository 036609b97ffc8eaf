"""Job manifests and waits the job-runner tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client

from edgeopt_dev.images import image_name
from tests.fixtures.common import wait_for

MANAGED = {"app.kubernetes.io/managed-by": "edgeopt"}
#: The operator image built here (Debian base, sh, Python with the kubernetes client): the Pods' image.
TEST_IMAGE = image_name("operator")


def job_manifest(name: str, command: list[str], *, backoff_limit: int = 0, **pod_spec: Any) -> dict[str, Any]:
    """A Job the runner picks up; ``pod_spec`` keys merge into the Pod spec (``job_spec`` into the Job spec)."""
    job_spec = pod_spec.pop("job_spec", {})
    container = {"name": "main", "image": TEST_IMAGE, "command": command}
    container.update(pod_spec.pop("container", {}))
    spec = {"restartPolicy": "Never", "containers": [container], **pod_spec}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": dict(MANAGED)},
        "spec": {"backoffLimit": backoff_limit, "template": {"spec": spec}, **job_spec},
    }


def job_condition(batch: client.BatchV1Api, name: str, namespace: str, kind: str) -> dict[str, Any] | None:
    job = batch.read_namespaced_job(name, namespace)
    for cond in job.status.conditions or []:
        if cond.type == kind and cond.status == "True":
            return {"type": cond.type, "reason": cond.reason, "message": cond.message}
    return None


def wait_job_finished(batch: client.BatchV1Api, name: str, namespace: str, timeout: float = 60) -> dict[str, Any]:
    """Wait for Complete or Failed; return that condition."""
    return wait_for(
        lambda: job_condition(batch, name, namespace, "Complete") or job_condition(batch, name, namespace, "Failed"),
        timeout=timeout,
        what=f"Job {namespace}/{name} to finish",
    )


def job_pods(core: client.CoreV1Api, name: str, namespace: str) -> list[client.V1Pod]:
    pods = core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={name}").items
    return sorted(pods, key=lambda p: p.metadata.creation_timestamp)


def containers_of(pod_uid: str) -> list[str]:
    """Names of the running containers of a Pod (the node agent labels each with its Pod's uid)."""
    from edgeopt_dev.containers import podman
    from edgeopt_dev.podrun import POD_UID_LABEL

    out = podman("ps", "--filter", f"label={POD_UID_LABEL}={pod_uid}", "--format", "{{.Names}}").stdout
    return out.split()


def cluster_containers(root: Path) -> list[str]:
    """Names of the running containers the dev cluster in ``root`` started."""
    from edgeopt_dev.containers import podman
    from edgeopt_dev.podrun import CLUSTER_LABEL, cluster_label

    out = podman("ps", "--filter", f"label={CLUSTER_LABEL}={cluster_label(root)}", "--format", "{{.Names}}").stdout
    return out.split()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"
