"""Render the chart with the real helm binary (built from its Go module).

Shared by the chart tests and by ``deploy/``: the plain manifests for kubectl
users are this rendering with the chart's defaults, so they cannot drift.
Regenerate them with:

    .venv/bin/python -m tests.ship.chart --write
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "edgeopt"
DEPLOY = ROOT / "deploy" / "edgeopt.yaml"
DEPLOY_CRDS = ROOT / "deploy" / "crds.yaml"
#: helm built from source reports Kubernetes v1.20 unless told; render for the version we test against.
KUBE_VERSION = "1.32.4"
DEPLOY_HEADER = """\
# GENERATED from charts/edgeopt with its default values; do not edit.
#   helm template edgeopt charts/edgeopt --namespace edgeopt --include-crds --skip-tests
# split in two: {crds} holds the CustomResourceDefinitions, {rest} the rest, because
# {rest} creates a ClusterKopfPeering, whose kind must be known before it is applied.
# Regenerate: .venv/bin/python -m tests.ship.chart --write  (a test checks they are current)
#
#   kubectl apply --server-side -f deploy/crds.yaml
#   kubectl wait --for=condition=Established crd -l app.kubernetes.io/part-of=edgeopt
#   kubectl create namespace edgeopt
#   kubectl apply --server-side -f deploy/edgeopt.yaml
"""


def helm() -> str:
    from edgeopt_dev.binaries import ensure_binaries

    return str(ensure_binaries(["helm"])["helm"])


def run_helm(kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``helm ARGS`` against the cluster of ``kubeconfig``; with ``check``, a failure shows helm's stderr."""
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    proc = subprocess.run([helm(), *args], env=env, capture_output=True, text=True, timeout=180, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def render_text(*args: str, namespace: str = "edgeopt", release: str = "edgeopt") -> str:
    cmd = [helm(), "template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"helm template failed: {proc.stderr.strip()}")
    return proc.stdout


def render(*args: str, namespace: str = "edgeopt") -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render_text(*args, namespace=namespace)) if d]


def deploy_manifests() -> dict[Path, str]:
    """deploy/crds.yaml and deploy/edgeopt.yaml, as they should read."""
    docs = render_text("--include-crds", "--skip-tests").split("\n---\n")
    crds, rest = [], []
    for doc in docs:
        body = doc.strip("-\n")
        if not body:
            continue
        kind = (yaml.safe_load(body) or {}).get("kind")
        (crds if kind == "CustomResourceDefinition" else rest).append(body)
    header = DEPLOY_HEADER.format(crds="deploy/crds.yaml", rest="deploy/edgeopt.yaml")
    return {
        DEPLOY_CRDS: header + "---\n" + "\n---\n".join(crds) + "\n",
        DEPLOY: header + "---\n" + "\n---\n".join(rest) + "\n",
    }


def main(argv: list[str]) -> int:
    stale = 0
    for path, text in deploy_manifests().items():
        if "--write" in argv:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
        elif not path.exists() or path.read_text() != text:
            print(f"{path} is stale; run: .venv/bin/python -m tests.ship.chart --write", file=sys.stderr)
            stale = 1
    return stale


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
