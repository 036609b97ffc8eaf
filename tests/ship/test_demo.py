"""`edgeopt demo` in CI: the whole path, and the chart's RBAC proven sufficient.

The demo builds the images, installs the chart with its operator and Triton
Deployments running from them (the operator with the chart's ServiceAccount
token projected into its Pod), takes the CPU example to Ready with the
conversion Job's Pod in the converter-cpu image, shows that Pod's logs with
kubectl, then infers. Every component runs in a container; passing here
means the ClusterRole is enough for the operator to do its whole job.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.k8s, pytest.mark.triton, pytest.mark.tf]


def run_demo(*args: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    t = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "edgeopt.cli", "demo", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return proc, time.monotonic() - t


@pytest.mark.timeout(1500)
def test_demo_takes_the_example_to_ready_and_triton_answers() -> None:
    proc, took = run_demo(timeout=1400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    for n in range(1, 11):
        assert f"✓ {n}/10 " in proc.stdout, f"step {n} did not report success:\n{proc.stdout[-3000:]}"
    # The operator and Triton ran as Pods of the chart's Deployments, Running and Ready on the dev node.
    pods = [line for line in proc.stdout.splitlines() if "$ kubectl get pods |" in line]
    assert any("edgeopt-triton-" in line and "1/1" in line and "Running" in line for line in pods), pods
    assert any(line.split("| ")[1].startswith("edgeopt-") and "triton" not in line and "1/1" in line
               and "Running" in line for line in pods[1:]), pods
    assert "helm test: the operator's and Triton's Services answer" in proc.stdout
    # The converter's progress lines, read back with `kubectl logs job/...`.
    logs = [line for line in proc.stdout.splitlines() if "$ kubectl logs job/" in line]
    assert any("publish" in line.lower() for line in logs), logs
    assert "Triton answered y = 6 over HTTP" in proc.stdout
    assert "Triton answered y = 6 over gRPC" in proc.stdout
    assert "graph ops" in proc.stdout and "TF latency" in proc.stdout
    assert "cannot read Secrets" in proc.stdout
    assert "torn down" in proc.stdout
    print(f"\nedgeopt demo wall time: {took:.1f}s")


@pytest.mark.timeout(600)
def test_demo_fails_loudly_at_the_broken_step(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = (ROOT / "examples" / "add-checkpoint-cpu.yaml").read_text()
    bad.write_text(text.replace("enabled: false", "enabled: false\n    precision: FP8"))
    proc, _ = run_demo("--example", str(bad), timeout=500)
    assert proc.returncode == 10, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "step 7/10 'kubectl apply -f" in proc.stderr, proc.stderr[-3000:]
    assert "FP8" in proc.stderr  # the API server's own reason reaches the user
    assert "✗ 7/10" in proc.stdout and "torn down" in proc.stdout
