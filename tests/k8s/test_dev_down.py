"""`edgeopt-dev up/down` from the command line: a crashed run is cleaned up, `down` leaves no process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeopt_dev import processes
from edgeopt_dev.controlplane import COMPONENTS
from tests.fixtures.common import wait_for
from tests.fixtures.k8s import make_kubectl
from tests.k8s.jobs import cluster_containers, job_manifest, pid_alive

pytestmark = pytest.mark.k8s

EDGEOPT_DEV = [sys.executable, "-m", "edgeopt_dev.cli"]  # the harness's script, as .venv/bin/edgeopt-dev runs it


def edgeopt_dev(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*EDGEOPT_DEV, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"edgeopt-dev {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def recorded_pids(root: Path) -> dict[str, int]:
    pids = {}
    for name in COMPONENTS:
        entry = processes.read_pidfile(root / "run" / f"{name}.pid")
        if entry:
            pids[name] = entry[0]
    return pids


def start_sleeper(root: Path, kubectl_path: Path) -> str:
    """A Job whose container sleeps; return the container's name once it runs."""
    kubectl = make_kubectl(kubectl_path, root / "kubeconfig")
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "work"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    job = job_manifest(
        "sleeper",
        ["sh", "-c", "touch /mnt/work/started; exec sleep 300"],
        securityContext={"fsGroup": 10001},
        volumes=[{"name": "work", "persistentVolumeClaim": {"claimName": "work"}}],
        container={"volumeMounts": [{"name": "work", "mountPath": "/mnt/work"}]},
    )
    started = root / "pvc" / "work" / "started"
    started.unlink(missing_ok=True)
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [pvc, job]}))
    wait_for(started.exists, timeout=60, what="the Job's container to start")
    [name] = cluster_containers(root)
    return name


def test_crashed_run_is_cleaned_up_and_down_leaves_no_process(tmp_path, kubectl_path, images):
    root = tmp_path / "dev"
    try:
        edgeopt_dev("up", "--dir", str(root), "--detach")
        first = recorded_pids(root)
        assert set(first) == set(COMPONENTS)
        orphan = start_sleeper(root, kubectl_path)

        # A crash: every component dies at once; the Pod's container (podman's conmon, not ours) lives on.
        for pid in first.values():
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(pid_alive(p) for p in first.values()), timeout=10, what="the crash")
        assert cluster_containers(root) == [orphan]

        t0 = time.monotonic()
        edgeopt_dev("up", "--dir", str(root), "--detach")  # stale pid files, old etcd data
        startup = time.monotonic() - t0
        print(f"cached start-up over a crashed DIR: {startup:.1f}s")
        assert startup < 30, f"cached start-up took {startup:.1f}s"
        assert orphan not in cluster_containers(root), "up must stop what the crashed run left behind"
        second = recorded_pids(root)
        sleeper = start_sleeper(root, kubectl_path)

        out = edgeopt_dev("down", "--dir", str(root)).stdout
        assert "nodeagent" in out and "kube-apiserver" in out and "etcd" in out
        for name, pid in second.items():
            assert not pid_alive(pid), f"{name} (pid {pid}) still runs after dev down"
            assert not processes.group_members(pid), f"{name}'s process group still has members"
        assert sleeper not in cluster_containers(root) and not cluster_containers(root)
        assert not list((root / "run").glob("*.pid"))
        assert "nothing was running" in edgeopt_dev("down", "--dir", str(root)).stdout
    finally:
        subprocess.run([*EDGEOPT_DEV, "down", "--dir", str(root)], timeout=120)
