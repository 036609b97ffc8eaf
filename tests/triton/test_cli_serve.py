"""The documented path, as a user runs it: samples → ``edgeopt convert -f`` → serve → ``edgeopt triton load``.

Uses the CPU example manifest itself (so the docs cannot rot), a PVC root in
a tmp dir, and the harness's ``edgeopt-dev serve`` as a real subprocess (its own Triton).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgeopt.triton.client import TritonClient
from edgeopt.triton.publish import existing_versions
from tests.fixtures.common import wait_for
from tests.fixtures.triton import tree_digest

pytestmark = [pytest.mark.triton, pytest.mark.tf]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "add-checkpoint-cpu.yaml"
EDGEOPT = [sys.executable, "-m", "edgeopt.cli"]
EDGEOPT_DEV = [sys.executable, "-m", "edgeopt_dev.cli"]  # the harness's script: samples, serve


def edgeopt(
    *args: str, env: dict[str, str], check: bool = True, program: list[str] = EDGEOPT
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*program, *args], env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{program[-1]} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_convert_example_then_serve_answers(tmp_path: Path) -> None:
    pvc = tmp_path / "pvc"
    env = {**os.environ, "EDGEOPT_PVC_ROOT": str(pvc), "TF_CPP_MIN_LOG_LEVEL": "2"}
    edgeopt("samples", "add", "--dir", str(pvc / "models" / "add"), env=env, program=EDGEOPT_DEV)
    repo = pvc / "triton-models"

    started = time.monotonic()
    edgeopt("convert", "-f", str(EXAMPLE), "--termination-log", str(tmp_path / "summary.json"), env=env)
    convert_s = time.monotonic() - started
    assert existing_versions(repo / "add") == [1]

    # A conversion that fails (a wrong output node) leaves the repository byte-for-byte as it was.
    bad = yaml.safe_load(EXAMPLE.read_text())
    bad["spec"]["source"]["outputs"] = ["no_such_node"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    before = tree_digest(repo)
    failed = edgeopt("convert", "-f", str(tmp_path / "bad.yaml"), env=env, check=False)
    assert failed.returncode != 0
    assert "no_such_node" in failed.stderr
    assert tree_digest(repo) == before

    # A second conversion publishes version 2.
    edgeopt("convert", "-f", str(EXAMPLE), env=env)
    assert existing_versions(repo / "add") == [1, 2]

    serve = subprocess.Popen(
        [*EDGEOPT_DEV, "serve", "--repository", str(repo), "--log-file", str(tmp_path / "triton.log")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()  # "HTTP    http://127.0.0.1:PORT" once live
        assert line.startswith("HTTP"), line + (serve.stderr.read() if serve.poll() is not None else "")
        url = line.split()[1]
        client = TritonClient(url, timeout=120)
        loaded = edgeopt("triton", "load", "add", "--url", url, env=env).stdout
        assert "ready versions: [1, 2]" in loaded and "smoke inference" in loaded, loaded
        load_s = float(loaded.split(" in ", 1)[1].split("s;", 1)[0])
        wait_for(lambda: client.ready_versions("add") == [1, 2], timeout=30, what="versions 1 and 2 ready")
        index = edgeopt("triton", "index", "--url", url, env=env).stdout
        assert [line.split() for line in index.splitlines()] == [["add", "1", "READY"], ["add", "2", "READY"]]
        started = time.monotonic()
        y = client.infer("add", {"x": np.array([[1.0]], dtype=np.float32)})["y"]
        first_ms = (time.monotonic() - started) * 1000
        np.testing.assert_allclose(y, [[6.0]])
        print(f"\n[measure] cli: convert+publish={convert_s:.1f}s load={load_s:.2f}s first_infer={first_ms:.1f}ms")
    finally:
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(60)
    assert code == 0
