"""`edgeopt-dev demo` in CI: the whole path, and the chart's RBAC proven sufficient.

The demo builds the images, installs the chart with its operator and Triton
Deployments running from them (the operator with the chart's ServiceAccount
token projected into its Pod), takes the CPU example to Ready with the
conversion Job's Pod in the converter-cpu image, shows that Pod's logs with
kubectl, then infers. Every component runs in a container; passing here
means the ClusterRole is enough for the operator to do its whole job.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from edgeopt_dev.demo import CAN_I, EXPECTED, STEPS

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.k8s, pytest.mark.triton, pytest.mark.tf]


Run = tuple[subprocess.CompletedProcess[str], dict[str, Any], float]


def run_demo(tmp_path: Path, *args: str, timeout: float) -> Run:
    """``edgeopt-dev demo --results``: the process, and the results it wrote (each step, the Pods, the answers)."""
    results = tmp_path / "results.json"
    t = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "edgeopt_dev.cli", "demo", "--results", str(results), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    took = time.monotonic() - t
    assert results.exists(), f"the demo wrote no results (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc, json.loads(results.read_text()), took


def step_statuses(results: dict[str, Any]) -> list[tuple[int, str]]:
    return [(s["n"], s["status"]) for s in results["steps"]]


@pytest.mark.timeout(1500)
def test_demo_takes_the_example_to_ready_and_triton_answers(tmp_path: Path) -> None:
    proc, results, took = run_demo(tmp_path, timeout=1400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert results["ok"] and results["error"] is None
    assert step_statuses(results) == [(n, "ok") for n in range(1, STEPS + 1)]
    # The operator and Triton ran as Pods of the chart's Deployments, Running and Ready on the dev node.
    pods = {p["component"]: p for p in results["pods"]}
    for component in ("operator", "triton"):
        assert pods[component]["phase"] == "Running" and pods[component]["ready"] == "1/1", results["pods"]
    assert results["helmTest"] and set(results["helmTest"].values()) == {"Succeeded"}, results["helmTest"]
    assert results["canI"] == {f"{verb} {resource}": want for verb, resource, want in CAN_I}
    # The converter's progress lines, read back with `kubectl logs job/...`.
    assert any("publish" in line.lower() for line in results["convertLog"]), results["convertLog"]
    assert results["answers"] == {"x": 1.0, "http": EXPECTED, "grpc": EXPECTED}
    report = results["status"]["report"]
    for key in ("opsBefore", "opsAfter", "latencyMsBefore", "latencyMsAfter"):
        assert report.get(key) is not None, report
    assert results["tornDown"]["stillRunning"] == []
    print(f"\nedgeopt-dev demo wall time: {took:.1f}s")


@pytest.mark.timeout(600)
def test_demo_fails_loudly_at_the_broken_step(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = (ROOT / "examples" / "add-checkpoint-cpu.yaml").read_text()
    bad.write_text(text.replace("enabled: false", "enabled: false\n    precision: FP8"))
    proc, results, _ = run_demo(tmp_path, "--example", str(bad), timeout=500)
    assert proc.returncode == 10, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not results["ok"]
    assert step_statuses(results) == [*((n, "ok") for n in range(1, 7)), (7, "failed")]
    (failed,) = [s for s in results["steps"] if s["status"] == "failed"]
    assert failed["title"] == f"kubectl apply -f {bad.resolve()}"
    assert "FP8" in failed["error"] and "FP8" in proc.stderr  # the API server's own reason reaches the user
    assert results["tornDown"]["stillRunning"] == []
