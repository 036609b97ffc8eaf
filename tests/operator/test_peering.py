"""Active/standby replicas through kopf peering: the highest priority reconciles, the other takes over."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.common import wait_for
from tests.operator.support import REPO, Kubectl, OperatorProcess, apply, example, jobs_of, om, wait_phase

pytestmark = [pytest.mark.k8s, pytest.mark.e2e]
PEERING_CRDS = REPO / "charts" / "edgeopt" / "crds" / "kopf-peering.yaml"


def test_standby_takes_over(
    kubectl: Kubectl,
    model_namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    control_plane: Any,
) -> None:
    ns = model_namespace
    kubectl("apply", "-f", str(PEERING_CRDS))
    kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=60s")
    kubectl(
        "apply",
        "-f",
        "-",
        input='{"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", '
        '"metadata": {"name": "edgeopt-test"}, "status": {}}',
    )
    for m in ("peer-a", "peer-b"):
        shutil.rmtree(control_plane.pvc_dir("triton-models") / m, ignore_errors=True)

    def replica(priority: int) -> OperatorProcess:
        op = operator_factory(
            EDGEOPT_PEERING_NAME="edgeopt-test", EDGEOPT_PRIORITY=str(priority), EDGEOPT_PEERING_LIFETIME_SECONDS="10"
        )
        op.stop()  # operator_factory starts --standalone; peering needs the flag off
        op.args = ["operator"]
        return op.start()

    # kopf starts paused and resumes only when no live peer outranks it.
    active = replica(100)
    wait_for(lambda: "Resuming operations" in active.log_text(), timeout=60, what="the active replica to resume")
    standby = replica(50)
    apply(kubectl, ns, example(name="peer-a", model_name="peer-a"))
    obj = wait_phase(kubectl, ns, "peer-a", "Ready")
    assert len(jobs_of(kubectl, ns, obj["metadata"]["uid"])) == 1
    assert "Resuming operations" not in standby.log_text()
    assert f"[{ns}/peer-a]" in active.log_text()
    assert f"[{ns}/peer-a]" not in standby.log_text(), "the standby must not touch resources while the active lives"

    active.stop(kill=True)
    wait_for(lambda: "Resuming operations" in standby.log_text(), timeout=60, what="the standby to take over")
    apply(kubectl, ns, example(name="peer-b", model_name="peer-b"))
    obj = wait_phase(kubectl, ns, "peer-b", "Ready", timeout=240)
    assert len(jobs_of(kubectl, ns, obj["metadata"]["uid"])) == 1
    assert om(kubectl, ns, "peer-a")["status"]["modelVersion"] == 1
