"""TensorFlow's own log stays out of the converter's output; its error lines are kept for a failure.

Run in a child process: the capture moves file descriptor 2 itself, as TensorFlow's C++ side writes there.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import os, sys
    from edgeopt.converter import native_log

    with native_log.captured(enabled=sys.argv[1] == "quiet") as (log, stderr):
        os.write(2, b"I0000 00:00:1.0 devices.cc:76] Number of eligible GPUs: 0\\n")
        os.write(2, b"E0000 00:00:2.0 meta_optimizer.cc:961] remapper failed: INVALID_ARGUMENT\\n")
        os.write(2, b"E0000 00:00:3.0 op_kernel.cc:1840] OP_REQUIRES failed: Conv2D needs 3 channels\\n")
        print("WARNING:tensorflow:deprecated", file=sys.stderr)
        print("[    0.1s] load      done", file=stderr)
        print("\\n".join(log.error_lines()))
    print("after", file=sys.stderr)
    """
)


def _child(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT
    )


def test_quiet_keeps_only_progress_and_the_error_lines_for_a_failure() -> None:
    proc = _child("quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["[    0.1s] load      done", "after"]
    # Known noise left out, the real error kept (a failure report shows it).
    assert proc.stdout.splitlines() == [
        "E0000 00:00:3.0 op_kernel.cc:1840] OP_REQUIRES failed: Conv2D needs 3 channels"
    ]


def test_verbose_lets_everything_through() -> None:
    proc = _child("verbose")
    assert proc.returncode == 0, proc.stderr
    assert "remapper failed" in proc.stderr and "WARNING:tensorflow:deprecated" in proc.stderr
    assert "Number of eligible GPUs" in proc.stderr and proc.stdout.strip() == ""
