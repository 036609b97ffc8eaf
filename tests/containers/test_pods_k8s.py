"""The podman runner resolving a Pod through the real API server, as the node agent does.

env from a ConfigMap, a Secret and fieldRefs, a ConfigMap volume and a PVC
(the hostPath volume the dev cluster binds it to) are resolved by podspec.py and run by
podrun.py, the two halves the node agent runs every Pod with, then enforced
by podman; the Secret's value reaches the container but never its command line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from edgeopt_dev.podrun import podman_run_args, resolve, run_container
from edgeopt_dev.podspec import NotYet, RuntimeContext
from tests.fixtures.common import wait_for

pytestmark = [pytest.mark.containers, pytest.mark.k8s]

SCRIPT = (
    'echo "cm=$MODE secret=$TOKEN ns=$NS"; cat /etc/app/greeting; echo claim > /data/written; '
    "printf done > /dev/termination-log"
)


def test_pod_env_and_volumes_resolve_through_the_api_and_run_in_podman(
    images: dict[str, str], control_plane: Any, k8s_client: Any, namespace: str, tmp_path: Path
) -> None:
    from kubernetes import client

    core = client.CoreV1Api(k8s_client)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "app"}, "data": {"mode": "fast", "greeting": "hello from a ConfigMap"}}
    )
    core.create_namespaced_secret(namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cr3t-v4lue"}})
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    claim = control_plane.pvc_dir("data")  # the folder of the hostPath volume the node agent makes for it
    os.chown(claim, 10001, 10001)
    wait_for(
        lambda: core.read_namespaced_persistent_volume_claim("data", namespace).status.phase == "Bound",
        timeout=30,
        what="the binder to bind the claim to its volume",
    )
    pod: dict[str, Any] = {
        "metadata": {"name": "resolver", "namespace": namespace, "uid": "uid-resolver"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True},
            "containers": [
                {
                    "name": "main",
                    "image": images["operator"],
                    "command": ["sh", "-c", SCRIPT],
                    "securityContext": {
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "env": [
                        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "mode"}}},
                        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    ],
                    "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"}, {"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "app", "items": [{"key": "greeting", "path": "greeting"}]}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
            ],
        },
    }
    host = control_plane.server.removeprefix("https://")
    ctx = RuntimeContext(
        root=control_plane.dir, core=core, api_host=host.split(":")[0], api_port=int(host.split(":")[1])
    )
    plan = resolve(pod, pod["spec"]["containers"][0], tmp_path, ctx)
    assert not any("s3cr3t" in a for a in podman_run_args(plan, tmp_path / "env")), "Secret value on the command line"
    result = run_container(plan, tmp_path, tmp_path / "log")
    out = (tmp_path / "log").read_text()
    assert (result.exit_code, result.message) == (0, "done"), out
    assert f"cm=fast secret=s3cr3t-v4lue ns={namespace}" in out and "hello from a ConfigMap" in out
    assert (claim / "written").read_text() == "claim\n"
    assert not (tmp_path / f"env-{plan.name}").exists(), "the env file is removed after the run"

    pod["spec"]["containers"][0]["env"][0]["valueFrom"]["configMapKeyRef"]["name"] = "missing"
    with pytest.raises(NotYet, match='configmap "missing" not found'):
        resolve(pod, pod["spec"]["containers"][0], tmp_path, ctx)
