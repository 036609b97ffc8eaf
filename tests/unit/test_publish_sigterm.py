"""SIGTERM mid-publish (Job deleted, node drained): the repository is as before, or has one complete new version.

A real child process installs the converter's SIGTERM handler and publishes
a version large enough (fsynced) to be caught half-way; the parent sends
SIGTERM while the staging dir exists. No TensorFlow: the publisher does not
parse the SavedModel it copies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgeopt.triton.publish import existing_versions, publish_version
from tests.fixtures.triton import file_artifact, optimized_model, tree_digest

CHILD = """
import sys
from pathlib import Path
from edgeopt.converter.command import TerminatedError, _handle_sigterm
from edgeopt.triton.publish import publish_version
from tests.fixtures.triton import file_artifact, optimized_model

art_dir, repo = Path(sys.argv[1]), Path(sys.argv[2])
_handle_sigterm()
art = file_artifact(art_dir, payload=(art_dir / "saved_model.pb").read_bytes())
print("ready", flush=True)
try:
    publish_version(art, optimized_model("m", repo))
except TerminatedError as exc:
    print("terminated:", exc, flush=True)
    sys.exit(exc.exit_code)
"""


def test_sigterm_mid_publish_leaves_the_repository_as_it_was(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    publish_version(file_artifact(tmp_path / "v1"), optimized_model("m", repo))
    before = tree_digest(repo)
    art = tmp_path / "big"
    art.mkdir()
    (art / "saved_model.pb").write_bytes(b"p")
    assets = art / "assets"
    assets.mkdir()
    for i in range(12):
        (assets / f"blob{i}.bin").write_bytes(os.urandom(8 << 20))
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(art), str(repo)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".staging-") for p in (repo / "m").iterdir()):
        assert child.poll() is None, "the publish ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    time.sleep(0.05)  # well inside the copy of 96 MiB
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 143, out
    assert "terminated: stopped by signal 15" in out
    after = tree_digest(repo)
    if after != before:  # the signal came after the atomic steps: exactly one complete new version
        assert existing_versions(repo / "m") == [1, 2]
        assert len(list((repo / "m" / "2" / "model.savedmodel" / "assets").iterdir())) == 12
        assert "versions: [ 1, 2 ]" in (repo / "m" / "config.pbtxt").read_text()
    assert not [p.name for p in (repo / "m").iterdir() if p.name.startswith((".staging-", ".deleting-"))]
    print(f"\n[measure] SIGTERM mid-publish: repository {'unchanged' if after == before else 'has version 2'}")
