"""Process groups with pid files, so ``dev down`` can stop what ``dev up`` started.

Each long-running process (etcd, kube-apiserver, the node agent, every Pod's
process) leads its own session, so one ``killpg`` reaches everything it
spawned.  A pid file stores the pid *and* the kernel start time: after a crash
and a reboot the pid may belong to someone else, and we must never signal a
stranger.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` in clock ticks, or None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # state: zombie or dead
        return None
    return int(fields[19])


def process_group(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else int(fields[2])


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and process_group(int(entry)) == pgid:
            members.append(int(entry))
    return members


def write_pidfile(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid} {start_time(pid) or 0}\n")
    os.replace(tmp, path)


def read_pidfile(path: Path) -> tuple[int, int] | None:
    try:
        pid, started = path.read_text().split()
        return int(pid), int(started)
    except (OSError, ValueError):
        return None


def live_pid(path: Path) -> int | None:
    """The pid recorded in ``path`` if that very process still runs."""
    entry = read_pidfile(path)
    if entry is None:
        return None
    pid, started = entry
    return pid if start_time(pid) == started else None


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_group(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL whatever is left after ``grace``."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not group_members(pid):
                return
            time.sleep(0.05)
    _reap(pid)


def stop_pidfile(path: Path, grace: float = 10.0) -> None:
    """Stop the group recorded in ``path`` (if it is still ours) and remove the file."""
    entry = read_pidfile(path)
    if entry is not None:
        pid, started = entry
        if start_time(pid) == started:
            stop_group(pid, grace)
        elif group_members(pid) and start_time(pid) is None:
            # Leader gone but its group lives on (e.g. a shell that exec'd away).
            stop_group(pid, grace)
    path.unlink(missing_ok=True)


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    cmd: Sequence[str],
    *,
    log: Path,
    pidfile: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    die_with_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` as a session leader, output appended to ``log``, pid recorded in ``pidfile``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
    write_pidfile(pidfile, proc.pid)
    return proc
