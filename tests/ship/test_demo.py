"""`edgeopt demo` in CI: the whole path, and the chart's RBAC proven sufficient.

The demo installs the chart (CRD, ServiceAccount, RBAC), runs the operator
with the ServiceAccount's TokenRequest token and takes the CPU example to
Ready through the node agent and the real Triton, then infers. Passing here
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
    for n in range(1, 10):
        assert f"✓ {n}/9 " in proc.stdout, f"step {n} did not report success:\n{proc.stdout[-3000:]}"
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
    assert "step 7/9 'kubectl apply -f" in proc.stderr, proc.stderr[-3000:]
    assert "FP8" in proc.stderr  # the API server's own reason reaches the user
    assert "✗ 7/9" in proc.stdout and "torn down" in proc.stdout
