"""Tenants on the dev control plane, with the operator running on the chart's own ServiceAccount token.

So the chart's real RBAC and its ValidatingAdmissionPolicy are in force: the
operator's converter Jobs must pass the policy, a spec outside the allow-lists
fails at once with NotAllowed (no Job, nothing contacted), and two namespaces
that pick the same modelName in one repository cannot overwrite, prune or
delete each other's model directory.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeopt.triton.ownership import OWNER_FILE, read_owner
from edgeopt_dev.demo import token_kubeconfig
from tests.fixtures.common import wait_for
from tests.operator.support import (
    TEST_ENV,
    Kubectl,
    OperatorProcess,
    apply,
    condition,
    create_claims,
    events_of,
    example,
    get,
    jobs_of,
    om,
    wait_phase,
)
from tests.ship import chart

pytestmark = [pytest.mark.k8s]


def content_digest(root: Path) -> str:
    """Every name and byte under ``root``. Not the modes: like kubelet with fsGroup, the node agent
    re-groups the whole claim whenever any Pod mounts it, which is the cluster's doing, not a tenant's."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        if path.is_file() and not path.is_symlink():
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def helm(control_plane: Any, *args: str) -> None:
    env = dict(os.environ, KUBECONFIG=str(control_plane.kubeconfig))
    proc = subprocess.run([chart.helm(), *args], env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def operator(
    control_plane: Any, kubectl: Kubectl, om_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The chart installed (operator Deployment off), and the operator run locally as its ServiceAccount."""
    name = f"edgeopt-{uuid.uuid4().hex[:6]}"
    repository, tag = TEST_ENV["EDGEOPT_CONVERTER_IMAGE"].rsplit(":", 1)  # the converter-cpu image built here
    helm(
        control_plane,
        "install",
        name,
        str(chart.CHART),
        "--namespace",
        name,
        "--create-namespace",
        "--set",
        "operator.enabled=false",
        "--set",
        "crds.enabled=false",
        "--set",
        f"converter.image.repository={repository}",
        "--set",
        f"converter.image.tag={tag}",
    )
    work = tmp_path_factory.mktemp("tenancy")
    token = kubectl("create", "token", name, "-n", name, "--duration=1h").stdout.strip()
    sa_kubeconfig = work / "kubeconfig"
    token_kubeconfig(
        sa_kubeconfig, control_plane.server, control_plane.ca_file, token, f"system:serviceaccount:{name}:{name}"
    )
    op = OperatorProcess(sa_kubeconfig, work / "operator.log").start()
    try:
        yield op
    finally:
        op.stop()
        helm(control_plane, "uninstall", name, "--namespace", name)
        kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def second_namespace(kubectl: Kubectl, model_namespace: str) -> Iterator[str]:
    name = f"{model_namespace[:50]}-b"
    kubectl("create", "namespace", name)
    create_claims(kubectl, name, "models", "triton-models")
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize(
    ("spec", "setting"),
    [
        ({"converter": {"image": "docker.io/library/busybox:latest"}}, "EDGEOPT_ALLOWED_CONVERTER_IMAGES"),
        ({"converter": {"runtimeClassName": "kata"}}, "EDGEOPT_ALLOWED_RUNTIME_CLASSES"),
        ({"converter": {"tolerations": [{"operator": "Exists"}]}}, "EDGEOPT_ALLOWED_TOLERATIONS"),
        ({"serving": {"tritonURL": "http://169.254.169.254:80"}}, "EDGEOPT_ALLOWED_TRITON_URLS"),
    ],
    ids=["image", "runtimeClass", "tolerations", "tritonURL"],
)
def test_a_spec_outside_the_allow_lists_fails_at_once(
    kubectl: Kubectl, model_namespace: str, operator: OperatorProcess, spec: dict[str, Any], setting: str
) -> None:
    ns = model_namespace
    apply(kubectl, ns, example(name="tenant", model_name=f"tenant-{uuid.uuid4().hex[:6]}", **spec))
    obj = wait_phase(kubectl, ns, "tenant", "Failed", timeout=30)
    ready = condition(obj, "Ready")
    assert ready["reason"] == "NotAllowed" and setting in ready["message"], ready
    assert not jobs_of(kubectl, ns, obj["metadata"]["uid"]), "a refused spec must never get a Job"
    warnings = [e for e in events_of(kubectl, ns, "tenant") if e["type"] == "Warning"]
    assert any(e["reason"] == "NotAllowed" and setting in e["message"] for e in warnings), warnings


@pytest.mark.e2e
def test_two_namespaces_cannot_share_a_model_directory(
    kubectl: Kubectl, model_namespace: str, second_namespace: str, operator: OperatorProcess, control_plane: Any
) -> None:
    """team A publishes; team B, same modelName, same repository: refused, A's files untouched, even on delete."""
    a, b = model_namespace, second_namespace
    model_name = f"owned-{uuid.uuid4().hex[:6]}"
    folder: Path = control_plane.pvc_dir("triton-models") / model_name
    apply(kubectl, a, example(name="mine", model_name=model_name))
    obj_a = wait_phase(kubectl, a, "mine", "Ready")  # its Job passed the chart's admission policy
    owner = read_owner(folder)
    assert owner is not None and (owner.namespace, owner.name, owner.uid) == (a, "mine", obj_a["metadata"]["uid"])
    # The converter mounted only this model's directory of the claim.
    (job,) = jobs_of(kubectl, a, obj_a["metadata"]["uid"])
    mounts = job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert [m.get("subPath") for m in mounts if "triton-models" in m["mountPath"]] == [model_name]
    before = content_digest(folder)

    # The same name in the same namespace and repository: refused before any Job could mount A's directory.
    apply(kubectl, a, example(name="copycat", model_name=model_name))
    copycat = wait_phase(kubectl, a, "copycat", "Failed", timeout=30)
    assert condition(copycat, "Ready")["reason"] == "OwnedByAnotherModel"
    assert f"{a}/mine" in condition(copycat, "Ready")["message"]
    assert not jobs_of(kubectl, a, copycat["metadata"]["uid"])

    apply(kubectl, b, example(name="theirs", model_name=model_name, target={"deletionPolicy": "Delete"}))
    obj_b = wait_phase(kubectl, b, "theirs", "Failed")
    ready = condition(obj_b, "Ready")
    assert ready["reason"] == "OwnedByAnotherModel", ready
    assert f"{a}/mine" in ready["message"] and obj_a["metadata"]["uid"] in ready["message"], ready["message"]
    assert content_digest(folder) == before, "the refused publish changed the owner's directory"

    # Deleting B (deletionPolicy Delete) runs the clean-up Job, which refuses: A's model stays.
    kubectl("delete", "om", "theirs", "-n", b, "--timeout=60s", timeout=70)

    def cleanup_failed() -> bool:
        jobs = get(kubectl, b, "jobs", None, "-l", "edgeopt.io/purpose=cleanup")["items"]
        return any(
            c["type"] == "Failed" and c["status"] == "True"
            for j in jobs
            for c in (j.get("status") or {}).get("conditions") or []
        )

    wait_for(cleanup_failed, timeout=90, what="the clean-up Job to refuse another tenant's directory")
    assert content_digest(folder) == before and (folder / OWNER_FILE).is_file()
    assert om(kubectl, a, "mine")["status"]["phase"] == "Ready"
