"""``edgeopt convert`` end to end on the shipped CPU example, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tf

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "add-checkpoint-cpu.yaml"


def _edgeopt(
    *args: str, pvc: Path, work: Path, quiet_tf: bool = True, module: str = "edgeopt.cli"
) -> subprocess.CompletedProcess[str]:
    """``edgeopt ARGS`` as a user runs it (``module="edgeopt_dev.cli"``: the harness's ``edgeopt-dev``)."""
    env = dict(os.environ, EDGEOPT_PVC_ROOT=str(pvc), EDGEOPT_WORKDIR=str(work))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    if quiet_tf:
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        env=env,
    )


def test_example_converts_writes_output_and_publishes(tmp_path: Path) -> None:
    import tensorflow as tf

    pvc, work = tmp_path / "pvc", tmp_path / "work"
    made = _edgeopt(
        "samples", "add", "--dir", str(pvc / "models" / "add"), pvc=pvc, work=work, module="edgeopt_dev.cli"
    )
    assert made.returncode == 0, made.stderr
    term = tmp_path / "term.json"
    out = tmp_path / "out"
    proc = _edgeopt(
        "convert", "-f", str(EXAMPLE), "--output", str(out), "--termination-log", str(term), pvc=pvc, work=work
    )
    assert proc.returncode == 0, proc.stderr
    # Progress for people on stderr, stage by stage, with elapsed time.
    for stage in ("load", "freeze", "optimize", "export", "validate", "report", "publish"):
        assert any(f"] {stage}" in ln and "done" in ln for ln in proc.stderr.splitlines()), (stage, proc.stderr)
    summary = json.loads(term.read_text())
    assert summary["ok"] is True and summary["reason"] == "Published" and summary["version"] == 1
    assert summary["model"] == "add"
    assert summary["report"]["opsBefore"] == 4 and summary["report"]["opsAfter"] == 3
    assert len(term.read_bytes()) < 4096
    assert json.loads(proc.stdout) == summary
    # --output holds the complete artefact.
    assert (out / "model.savedmodel" / "saved_model.pb").is_file() and (out / "report.json").is_file()
    sig = tf.saved_model.load(str(out / "model.savedmodel")).signatures["serving_default"]
    assert sig(x=tf.constant([[1.0]]))["y"].numpy().tolist() == [[6.0]]
    # Published into the claim the example names, as version 1 with a config.
    version_dir = pvc / "triton-models" / "add" / "1"
    assert (version_dir / "model.savedmodel" / "saved_model.pb").is_file()
    assert (pvc / "triton-models" / "add" / "config.pbtxt").is_file()
    assert json.loads((version_dir / "report.json").read_text())["summary"]["opsAfter"] == 3
    # The scratch space is cleaned up.
    assert not any((work / "edgeopt-work").iterdir())


def test_no_publish_json_log(tmp_path: Path) -> None:
    pvc, work = tmp_path / "pvc", tmp_path / "work"
    from edgeopt_dev.samples import write_add_checkpoint

    write_add_checkpoint(pvc / "models" / "add")
    # TensorFlow's log at its own default level: still, every stderr line is one of the converter's events.
    args = ("convert", "-f", str(EXAMPLE), "--no-publish", "--log-format", "json")
    proc = _edgeopt(*args, pvc=pvc, work=work, quiet_tf=False)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(ln) for ln in proc.stderr.splitlines()]
    stages = [e["stage"] for e in events if e["event"] == "done"]
    assert stages[:4] == ["load", "freeze", "optimize", "export"] and stages[-1] == "convert"
    assert all("elapsed" in e and "ts" in e for e in events)
    assert json.loads(proc.stdout)["reason"] == "Converted"
    assert not (pvc / "triton-models").exists()
