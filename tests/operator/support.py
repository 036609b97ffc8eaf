"""Running the real operator in tests, and reading what it wrote.

The operator runs as ``edgeopt operator`` in its own process, exactly as it
runs in the cluster image, so a test can kill it (SIGKILL, mid-Job) and start
it again. Everything else is read back through kubectl, as a user would.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from edgeopt_dev.images import image_name
from edgeopt_dev.netutil import free_port
from tests.fixtures.common import wait_for
from tests.fixtures.k8s import Kubectl

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "optimizedmodels.edgeopt.io.yaml"
EXAMPLE = REPO / "examples" / "add-checkpoint-cpu.yaml"

#: The local tests run the converter on the CPU with the dev node agent, in the converter-cpu
#: image built here; no GPU, no retries (a conversion error is deterministic), quick capacity re-checks.
TEST_ENV = {
    "EDGEOPT_CONVERTER_IMAGE": image_name("converter-cpu"),
    "EDGEOPT_CONVERTER_RESOURCES": "{}",
    "EDGEOPT_JOB_BACKOFF_LIMIT": "0",
    "EDGEOPT_CAPACITY_POLL_SECONDS": "1",
    "EDGEOPT_SERVING_BACKOFF_SECONDS": "1",
    "EDGEOPT_MAX_CONCURRENT_CONVERSIONS": "1",
}


class OperatorProcess:
    """``edgeopt operator --standalone`` against the test control plane."""

    def __init__(self, kubeconfig: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.env = {**TEST_ENV, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.liveness_port = self.metrics_port = 0
        self.starts = 0
        self.args = ["operator", "--standalone"]

    def start(self) -> OperatorProcess:
        self.liveness_port, self.metrics_port = free_port(), free_port()
        env = dict(
            os.environ,
            KUBECONFIG=str(self.kubeconfig),
            EDGEOPT_LIVENESS_PORT=str(self.liveness_port),
            EDGEOPT_METRICS_PORT=str(self.metrics_port),
            **self.env,
        )
        edgeopt = Path(sys.executable).parent / "edgeopt"
        log = self.log_path.open("ab")
        log.write(f"\n===== start #{self.starts + 1} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen([str(edgeopt), *self.args], env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.starts += 1
        wait_for(self.alive, timeout=60, what=f"the operator's liveness endpoint (log: {self.log_path})")
        return self

    def alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the operator exited with {self.proc.returncode}; log:\n{self.log_tail()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2) as resp:
            return bool(resp.status == 200)

    def stop(self, *, kill: bool = False) -> None:
        """SIGKILL (a crash: no clean-up at all) or SIGTERM (kopf's graceful stop)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def metrics(self) -> dict[str, float]:
        """The Prometheus samples, ``name{labels}`` -> value."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def api_calls(self) -> dict[tuple[str, str], int]:
        """(verb, resource) -> count of the operator's own API calls so far (kopf's not included)."""
        calls: dict[tuple[str, str], int] = {}
        for key, value in self.metrics().items():
            if key.startswith("edgeopt_operator_api_requests_total{"):
                labels = dict(part.split("=", 1) for part in key[key.index("{") + 1 : -1].split(","))
                calls[(labels["verb"].strip('"'), labels["resource"].strip('"'))] = int(value)
        return calls


# --------------------------------------------------------------------------- manifests


def example(name: str | None = None, model_name: str | None = None, **spec: Any) -> dict[str, Any]:
    """The checkpoint example as the converter reads it (PyYAML), optionally renamed/changed."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc = copy.deepcopy(doc)
    if name:
        doc["metadata"]["name"] = name
    if model_name:
        doc["spec"]["target"]["modelName"] = model_name
    for key, value in spec.items():
        doc["spec"].setdefault(key, {}).update(value)
    return dict(doc)


def apply(kubectl: Kubectl, namespace: str, doc: dict[str, Any], *, check: bool = True) -> Any:
    return kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc), check=check)


def create_claims(kubectl: Kubectl, namespace: str, *claims: str) -> None:
    for claim in claims:
        pvc = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
        }
        apply(kubectl, namespace, pvc)


# --------------------------------------------------------------------------- reading back


def get(kubectl: Kubectl, namespace: str, kind: str, name: str | None = None, *selector: str) -> Any:
    args = ["get", kind, "-n", namespace, "-o", "json", *selector]
    if name:
        args.insert(2, name)
    return json.loads(kubectl(*args).stdout)


def om(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return dict(get(kubectl, namespace, "optimizedmodel", name))


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def wait_phase(
    kubectl: Kubectl, namespace: str, name: str, phase: str, *, generation: int = 1, timeout: float = 180
) -> dict[str, Any]:
    """Wait until status.phase == phase for ``generation``; a Failed on the way fails at once with its message."""

    def check() -> dict[str, Any] | None:
        obj = om(kubectl, namespace, name)
        st = obj.get("status") or {}
        if st.get("observedGeneration") != generation:
            return None
        if st.get("phase") == "Failed" and phase != "Failed":
            raise AssertionError(f"{name} Failed: {condition(obj, 'Ready').get('message')}")
        return obj if st.get("phase") == phase else None

    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{namespace}/{name} did not reach {phase} (generation {generation}) in {timeout}s")
        time.sleep(0.25)


def jobs_of(kubectl: Kubectl, namespace: str, uid: str) -> list[dict[str, Any]]:
    return list(get(kubectl, namespace, "jobs", None, "-l", f"edgeopt.io/uid={uid}")["items"])


def events_of(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    items = get(kubectl, namespace, "events", None, "--field-selector", f"involvedObject.name={name}")["items"]
    return [e for e in items if e["involvedObject"]["kind"] == "OptimizedModel"]
