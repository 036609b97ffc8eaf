"""Container tooling the harness owns: podman, buildah, runc, debootstrap and their config.

The dev harness runs images built from this repository's Dockerfile with
podman.  Two facts of these machines shape how (docs/development.md says the
same for contributors, under "What the two commands install"):

* crun, podman's default runtime on Debian 12, fails ("cgroups in hybrid mode
  not supported"); runc works.
* podman's default ulimits raise rlimits, which needs CAP_SYS_RESOURCE; that
  capability is not in the bounding set, so every run would fail with
  "setrlimit ... operation not permitted".  Limits at or below the current
  hard limit work.

Both are settled in a containers.conf that the harness writes under
``~/.cache/edgeopt/containers/`` and hands to podman with ``CONTAINERS_CONF``:
the system's ``/etc/containers`` is never edited, so a user's own podman set-up
is left alone.  Missing tools are installed with apt on Debian/Ubuntu when we
are root (what CI and these machines are); otherwise the error says what to run.
Standard library only: this runs before any venv exists.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgeopt_dev.cache import cache_dir

#: Debian packages, and the command each provides.
APT_PACKAGES: dict[str, str] = {"podman": "podman", "buildah": "buildah", "runc": "runc", "debootstrap": "debootstrap"}
#: The ulimits every container gets: at most what this process may have (raising needs CAP_SYS_RESOURCE).
WANTED_ULIMITS = {"nofile": (resource.RLIMIT_NOFILE, 4096), "nproc": (resource.RLIMIT_NPROC, 4096)}


class ContainerToolError(RuntimeError):
    """podman or a helper is missing or unusable; the message says what to do."""


def _log(msg: str) -> None:
    print(f"[containers] {msg}", file=sys.stderr, flush=True)


def _ulimit(name: str) -> str:
    """``name=N:N`` with N the wanted value, lowered to the hard limit when that is smaller."""
    which, wanted = WANTED_ULIMITS[name]
    _soft, hard = resource.getrlimit(which)
    value = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    return f"{name}={value}:{value}"


def containers_conf_text() -> str:
    """The harness's containers.conf: runc, and ulimits that need no CAP_SYS_RESOURCE."""
    ulimits = ", ".join(f'"{_ulimit(n)}"' for n in WANTED_ULIMITS)
    return (
        "# Written by edgeopt (harness/edgeopt_dev/containers.py); podman reads it through CONTAINERS_CONF.\n"
        "# The system's /etc/containers is never edited.\n"
        "[containers]\n"
        "# Raising an rlimit needs CAP_SYS_RESOURCE, which these machines do not have.\n"
        f"default_ulimits = [{ulimits}]\n"
        "[engine]\n"
        '# crun fails here ("cgroups in hybrid mode not supported"); runc works.\n'
        'runtime = "runc"\n'
        "# No systemd to talk to (and no journal): plain cgroupfs, files for events.\n"
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )


def containers_conf() -> Path:
    """Write the harness's containers.conf when it is missing or different; return its path."""
    path = cache_dir() / "containers" / "containers.conf"
    text = containers_conf_text()
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def podman_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every podman/buildah call of the harness runs with."""
    env = dict(os.environ if base is None else base)
    env["CONTAINERS_CONF"] = str(containers_conf())
    return env


def missing_tools() -> list[str]:
    """Debian packages whose command is not on PATH (or in /usr/sbin, where debootstrap lives)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [pkg for pkg, cmd in APT_PACKAGES.items() if shutil.which(cmd, path=path) is None]


def ensure_tools() -> None:
    """Install podman, buildah, runc and debootstrap with apt when missing; quick when present.

    Only as root on a machine with apt-get; elsewhere the error names the
    packages to install.  Idempotent: a second call finds everything and
    returns without touching apt.
    """
    missing = missing_tools()
    if not missing:
        return
    apt = shutil.which("apt-get")
    if os.geteuid() != 0 or apt is None:
        raise ContainerToolError(
            f"{', '.join(missing)} not found. The container tests and image builds need podman, buildah, runc "
            f"and debootstrap: install them (Debian/Ubuntu, as root: apt-get install {' '.join(missing)}) "
            "and run again."
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    t0 = time.monotonic()
    _log(f"installing {' '.join(missing)} with apt-get (first time only)")
    for cmd in (
        [apt, "update", "-qq"],
        [apt, "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise ContainerToolError(f"`{' '.join(cmd)}` failed:\n{tail}")
    still = missing_tools()
    if still:
        raise ContainerToolError(f"apt-get installed the packages but {', '.join(still)} is still not on PATH")
    _log(f"installed {' '.join(missing)} in {time.monotonic() - t0:.0f}s")


def podman(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS`` with the harness's containers.conf; output captured as text."""
    proc = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, check=False, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise ContainerToolError(f"`podman {' '.join(args)}` exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


@dataclass(frozen=True)
class Probe:
    """Whether podman can run a container here, and if not, why (what a test's skip says)."""

    ok: bool
    reason: str


def probe(image: str) -> Probe:
    """Run ``true`` in ``image`` the way the tests run containers; a failure is reported, never raised."""
    if shutil.which("podman") is None:
        return Probe(False, "podman is not installed (apt-get install podman buildah runc debootstrap)")
    try:
        proc = podman(
            "run",
            "--rm",
            "--network",
            "host",
            "--read-only",
            "--user",
            "10001:10001",
            image,
            "true",
            check=False,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Probe(False, f"podman cannot run a container here: {exc}")
    if proc.returncode != 0:
        return Probe(False, f"podman cannot run a container here: {proc.stderr.strip()[-500:]}")
    return Probe(True, "")


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def image_label(name: str, label: str) -> str | None:
    """A label of a local image, or None when the image or the label is absent."""
    proc = podman("image", "inspect", "--format", f'{{{{index .Labels "{label}"}}}}', name, check=False)
    value = proc.stdout.strip()
    return value if proc.returncode == 0 and value and value != "<no value>" else None


def image_user(name: str) -> str:
    """The image's configured USER ("" means root, as for the kubelet)."""
    return podman("image", "inspect", "--format", "{{.Config.User}}", name).stdout.strip()


def image_size(name: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", name).stdout.strip())
