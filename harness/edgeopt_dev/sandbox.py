"""The first moments of a Pod's process: a private mount namespace, then exec.

The node agent starts ``python -m edgeopt_dev.sandbox PLAN.json``; this
process unshares its mount (and UTS) namespace, bind-mounts every volume at
exactly the path the Pod spec names (``/etc/edgeopt``,
``/mnt/edgeopt/pvc/<claim>``, ``/dev/termination-log`` ...), sets the
hostname to the Pod name, and then *execs* the container command, so the pid
the runner watches is the command itself.

A mount point that does not exist on this machine is made without touching
the host: its nearest existing parent is shadowed by a tmpfs into which the
parent's entries are bind-mounted back, the way container runtimes build
``/dev``; a new top-level directory gets the same treatment for ``/`` itself,
through chroot.  Nothing outlives the namespace.  Standard library only.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
# Exit code when the sandbox itself cannot set up the container.  The reason
# goes to the runner through the inherited pipe ``plan["errorFd"]``, which is
# close-on-exec: after a successful exec the runner reads nothing (runc's trick).
SETUP_FAILED = 128

_libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
            ctypes.c_ulong(flags), data.encode() if data else None,
        ),
        f"mount {source or ''} on {target}",
    )


def _bind(source: str, target: str, read_only: bool) -> None:
    _mount(source, target, None, MS_BIND | MS_REC)
    # Always set the flag: a bind copies its source mount's flags, and the
    # source may sit on the root we just made read-only.
    _mount(None, target, None, MS_REMOUNT | MS_BIND | (MS_RDONLY if read_only else 0))


class Namespace:
    """Mount points made so far: paths under a shadow tmpfs may be created freely."""

    def __init__(self, scratch: Path) -> None:
        # Staging happens on a private tmpfs reached through a file descriptor:
        # the scratch path itself may be covered by a later mount (a /tmp
        # emptyDir) or be read-only (readOnlyRootFilesystem).
        _mount("tmpfs", str(scratch), "tmpfs", 0, "mode=700")
        self.scratch = Path(f"/proc/self/fd/{os.open(scratch, os.O_PATH | os.O_DIRECTORY)}")
        self.shadows: list[str] = []
        # What belongs to the "root filesystem" and must turn read-only with
        # readOnlyRootFilesystem: shadow tmpfs and the host entries bound back
        # into them (else a write would reach the host's file).  /dev is a
        # separate, writable tmpfs in a container, so it stays out.
        self.root_mounts: list[str] = []
        self.volumes: list[str] = []  # bound volume directories: mount points inside are made there
        self.created: set[str] = set()  # folders made on our own tmpfs

    def _shadow(self, directory: str, add_mode: int = 0) -> None:
        """Cover ``directory`` with a tmpfs that shows the same entries, so new ones can be added."""
        stage = self.scratch / f"shadow{len(self.shadows)}"
        stage.mkdir(parents=True, exist_ok=True)
        _mount(directory, str(stage), None, MS_BIND | MS_REC)
        st = os.stat(directory)
        mode = (st.st_mode | add_mode) & 0o7777
        _mount("tmpfs", directory, "tmpfs", 0, f"mode={mode:o},uid={st.st_uid},gid={st.st_gid}")
        in_root = directory != "/dev" and not directory.startswith("/dev/")
        if in_root:
            self.root_mounts.append(directory)
        for name in os.listdir(stage):
            src, dst = stage / name, os.path.join(directory, name)
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
                continue
            if src.is_dir():
                os.mkdir(dst)
                _mount(str(src), dst, None, MS_BIND | MS_REC)
            else:  # files, device nodes, sockets, fifos
                Path(dst).touch()
                _mount(str(src), dst, None, MS_BIND)
            if in_root:
                self.root_mounts.append(dst)
        _check(_libc.umount2(str(stage).encode(), MNT_DETACH), f"umount {stage}")
        self.shadows.append(directory)

    def shadow_root(self) -> None:
        """chroot into a tmpfs that shows every top-level entry of this machine, so new ones can be made.

        The same trick as ``_shadow`` one level up (a tmpfs cannot cover the
        live ``/``).  The source descriptors and ``/proc/self/fd`` stay valid.
        """
        root = self.scratch / "root"
        root.mkdir()
        _mount("tmpfs", str(root), "tmpfs", 0, "mode=755")
        for name in os.listdir("/"):
            src, dst = "/" + name, root / name
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
                continue
            if os.path.isdir(src):
                dst.mkdir()
                _mount(src, str(dst), None, MS_BIND | MS_REC)
            else:
                dst.touch()
                _mount(src, str(dst), None, MS_BIND)
            if name not in ("dev", "proc", "sys"):
                self.root_mounts.append(src)
        os.chdir(root)
        os.chroot(".")
        os.chdir("/")
        self.shadows.append("/")

    def seal(self) -> None:
        """readOnlyRootFilesystem: "/" and everything standing in for it become read-only."""
        for path in ["/", *self.root_mounts]:
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY)

    def ensure(self, target: str, is_dir: bool) -> str:
        """Make ``target`` exist as a mount point of the right kind; return its real path."""
        if os.path.lexists(target):
            real = os.path.realpath(target)
            if os.path.isdir(real) != is_dir:
                kind = "directory" if is_dir else "file"
                raise SandboxError(f"mount path {target} exists here but is not a {kind}")
            return real
        ancestor = os.path.dirname(target)
        while not os.path.lexists(ancestor):
            ancestor = os.path.dirname(ancestor)
        real_parent = os.path.realpath(ancestor)
        if not os.path.isdir(real_parent):
            raise SandboxError(f"cannot mount at {target}: {ancestor} is not a directory")
        rest = os.path.relpath(target, ancestor)
        real = os.path.join(real_parent, rest)
        # Only a shadow's own tmpfs, folders made in it, and volumes may take new
        # entries; a host folder bound back into a shadow is the host's: shadow it.
        ours = real_parent in self.shadows or real_parent in self.created
        if not ours and not any(real_parent == v or real_parent.startswith(v + "/") for v in self.volumes):
            self._shadow(real_parent)
        parts = Path(rest).parts
        path = real_parent
        for part in parts[:-1] if not is_dir else parts:
            path = os.path.join(path, part)
            os.mkdir(path)
            self.created.add(path)
        if not is_dir:
            Path(real).touch()
        return real


def enter(plan: dict) -> None:
    """Set up the namespace described by ``plan`` (see kubelet.py) in this process."""
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare mount namespace")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates to the host
    hostname = plan["hostname"].encode()
    _check(_libc.sethostname(hostname, len(hostname)), "sethostname")
    ns = Namespace(Path(plan["scratch"]))
    mounts = sorted(plan["mounts"], key=lambda m: m["target"].rstrip("/").count("/"))
    # Hold every source open first: a mount over /tmp must not hide a source under /tmp.
    sources = []
    for m in mounts:
        try:
            sources.append(os.open(m["source"], os.O_PATH))
        except OSError as exc:
            raise SandboxError(f"volume source {m['source']}: {exc.strerror}") from exc
    is_dir = [stat.S_ISDIR(os.fstat(fd).st_mode) for fd in sources]
    targets = [m["target"].rstrip("/") or "/" for m in mounts]
    if any(not os.path.lexists("/" + t.strip("/").split("/")[0]) for t in targets if t != "/"):
        ns.shadow_root()  # e.g. /workspace: a new top-level directory needs a root of our own
    for directory in plan.get("traversable") or []:
        # The "image" is this machine: a non-root user must reach its interpreter
        # (e.g. a pyenv Python under /root, mode 0700), as in a real image.
        ns._shadow(directory, add_mode=0o111)

    def nested(target: str) -> bool:
        return any(target != other and target.startswith(other + "/") for other in targets)

    # Mount points first (they may need writable shadows), then seal the root,
    # then the volumes on top, which keep their own read-write flag.  A mount
    # point inside another volume is made in that volume, as runtimes do.
    reals = {i: ns.ensure(t, is_dir[i]) for i, t in enumerate(targets) if not nested(t)}
    if plan.get("readOnlyRootFilesystem"):
        ns.seal()
    for i, (m, fd) in enumerate(zip(mounts, sources, strict=True)):
        real = reals[i] if i in reals else ns.ensure(targets[i], is_dir[i])
        _bind(f"/proc/self/fd/{fd}", real, bool(m.get("readOnly")))
        os.close(fd)
        if is_dir[i]:
            ns.volumes.append(real)
    workdir = plan.get("workingDir") or "/"
    try:
        os.chdir(workdir)
    except OSError as exc:
        raise SandboxError(f"workingDir {workdir}: {exc.strerror}") from exc


def main(argv: list[str]) -> int:
    plan = json.loads(Path(argv[0]).read_text())
    error_fd = int(plan["errorFd"])
    os.set_inheritable(error_fd, False)  # closed by a successful exec
    try:
        enter(plan)
        argv_exec = list(plan["prefix"]) + list(plan["command"])
        os.execvpe(argv_exec[0], argv_exec, plan["env"])
    except (SandboxError, OSError) as exc:
        message = str(exc)
        if isinstance(exc, FileNotFoundError) and exc.filename is None:
            message = f"executable file not found in $PATH: {plan['command'][0]}"
        os.write(error_fd, message.encode()[:4096])
        print(f"edgeopt node agent: cannot start container: {message}", file=sys.stderr, flush=True)
        return SETUP_FAILED
    return SETUP_FAILED  # not reached: exec replaced us


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
