"""Fixtures for the operator tests: the CRD, the sample model on the `models` claim, the operator."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.k8s import wait_established
from tests.operator.support import CRD, Kubectl, OperatorProcess, create_claims

RBAC_NAMESPACE = "edgeopt-rbac"


@pytest.fixture(scope="session")
def om_crd(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(CRD))
    wait_established(kubectl, "crd/optimizedmodels.edgeopt.io")


@pytest.fixture(scope="session")
def add_model(control_plane: Any) -> Path:
    """``edgeopt-dev samples add`` on the `models` claim, as the example's comment says."""
    target = control_plane.pvc_dir("models") / "add"
    if not (target / "checkpoint").exists():
        command = [sys.executable, "-m", "edgeopt_dev.cli", "samples", "add", "--dir", str(target)]
        subprocess.run(command, check=True, capture_output=True)
    return Path(target)


@pytest.fixture
def model_namespace(namespace: str, kubectl: Kubectl, om_crd: None, add_model: Path) -> str:
    """A test namespace with the two claims the example uses."""
    create_claims(kubectl, namespace, "models", "triton-models")
    return namespace


@pytest.fixture(scope="module")
def operator_factory(
    control_plane: Any, om_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operators for this module; all are stopped at its end (one per module keeps the suite lean)."""
    started: list[OperatorProcess] = []
    logs = tmp_path_factory.mktemp("operator")

    def start(**env: str) -> OperatorProcess:
        op = OperatorProcess(control_plane.kubeconfig, logs / f"operator-{len(started)}.log", env)
        started.append(op)
        return op.start()

    yield start
    for op in started:
        op.stop()


@pytest.fixture(scope="session")
def chart_kubeconfig(control_plane: Any, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig holding a token of the chart's ServiceAccount, bound by the chart's own RBAC templates."""
    from edgeopt_dev.demo import token_kubeconfig
    from tests.ship.chart import render

    docs = render(
        "--show-only",
        "templates/serviceaccount.yaml",
        "--show-only",
        "templates/rbac.yaml",
        namespace=RBAC_NAMESPACE,
    )
    kubectl("create", "namespace", RBAC_NAMESPACE, check=False)
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    (sa,) = [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"]
    token = kubectl("create", "token", sa, "-n", RBAC_NAMESPACE, "--duration=2h").stdout.strip()
    path = tmp_path_factory.mktemp("rbac") / "kubeconfig"
    token_kubeconfig(path, control_plane.server, control_plane.ca_file, token, f"system:serviceaccount:{sa}")
    return path
