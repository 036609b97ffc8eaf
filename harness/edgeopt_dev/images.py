"""Build the Dockerfile's images here, from a Debian stand-in base when registries are out of reach.

Docker Hub and nvcr.io cannot be reached from these machines, but Debian's
package mirror can.  So the harness makes the Python base the Dockerfile's
``PYTHON_BASE`` argument points at: ``debootstrap --variant=minbase`` of
bookworm with Python 3.11, its shared libpython (Triton's Python backend stub
links it, as the official python images ship it) and CA certificates,
``podman import``-ed under a local name.  Like ``python:3.11-slim``, it has
``python`` and ``pip`` first on PATH and writable (a venv at /opt/python), so
the Dockerfile runs unchanged on either base.

Caching: the base image carries a label with the digest of everything it was
made from (suite, variant, packages, mirror, the venv step); a matching image
is reused, anything else is rebuilt.  The Dockerfile targets use podman's
layer cache and a pip cache mount, so a second build is a few seconds.
Standard library only, like binaries.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgeopt import __version__
from edgeopt_dev.containers import (
    ContainerToolError,
    cache_dir,
    containers_conf,
    ensure_tools,
    image_label,
    image_size,
    podman_env,
)

ROOT = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "libpython3.11", "ca-certificates")
BASE_IMAGE = f"localhost/edgeopt/debian-python:{SUITE}"
INPUTS_LABEL = "io.edgeopt.base.inputs"
VENV = "/opt/python"
BASE_PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: Targets built here, in dependency-friendly order (they share the `python` stage).
LOCAL_TARGETS = ("operator", "converter-cpu", "triton-cpu")
TAG = "dev"


def image_name(target: str) -> str:
    return f"localhost/edgeopt-{target}:{TAG}"


def _log(msg: str) -> None:
    print(f"[images] {msg}", file=sys.stderr, flush=True)


def apt_mirror(sources: list[Path] | None = None) -> str:
    """The Debian mirror this machine's apt uses for the main archive (not security), else deb.debian.org."""
    if sources is None:
        sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri, suites in _source_entries(text, deb822=path.suffix == ".sources"):
            if "security" not in uri and SUITE in suites:
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _source_entries(text: str, *, deb822: bool) -> list[tuple[str, list[str]]]:
    """(URI, suites) of each ``deb`` entry of a sources.list or deb822 .sources file."""
    entries: list[tuple[str, list[str]]] = []
    if deb822:
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(
                (k.strip().lower(), v.strip())
                for k, _, v in (ln.partition(":") for ln in stanza.splitlines() if ln and not ln.startswith("#"))
            )
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                entries += [(u, fields.get("suites", "").split()) for u in fields.get("uris", "").split()]
        return entries
    for line in text.splitlines():
        words = [w for w in re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()]
        if len(words) >= 3 and words[0] == "deb":
            entries.append((words[1], [words[2]]))
    return entries


@dataclass(frozen=True)
class BaseRecipe:
    """Everything the stand-in base is made from; its digest is the cache key."""

    suite: str
    mirror: str
    packages: tuple[str, ...]
    variant: str = "minbase"
    venv: str = VENV

    def digest(self) -> str:
        data = json.dumps(
            {
                "suite": self.suite,
                "mirror": self.mirror,
                "packages": sorted(self.packages),
                "variant": self.variant,
                "venv": self.venv,
                "path": BASE_PATH,
                "recipe": 1,
            },
            sort_keys=True,
        )
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    def debootstrap_command(self, root: Path) -> list[str]:
        return [
            "debootstrap",
            f"--variant={self.variant}",
            f"--include={','.join(self.packages)}",
            self.suite,
            str(root),
            self.mirror,
        ]


def base_recipe() -> BaseRecipe:
    return BaseRecipe(suite=SUITE, mirror=apt_mirror(), packages=BASE_PACKAGES)


def _run(cmd: list[str], what: str, **kwargs: object) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise ContainerToolError(f"{what} failed (`{' '.join(cmd)}`):\n{tail}")


def build_base(*, force: bool = False) -> str:
    """The Debian stand-in Python base: reused when its inputs are unchanged, else debootstrapped and imported."""
    ensure_tools()
    recipe = base_recipe()
    digest = recipe.digest()
    if not force and image_label(BASE_IMAGE, INPUTS_LABEL) == digest:
        _log(f"{BASE_IMAGE} is current (inputs {digest})")
        return BASE_IMAGE
    work = cache_dir() / "images"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=work) as tmp:
        root = Path(tmp) / "root"
        _log(f"debootstrap {recipe.suite} from {recipe.mirror} (first time only, about a minute)")
        _run(recipe.debootstrap_command(root), "debootstrap")
        _run(["chroot", str(root), "python3", "-m", "venv", recipe.venv], "creating the base's venv")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (root / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        _import(root, digest)
    _log(f"built {BASE_IMAGE} in {time.monotonic() - t0:.0f}s")
    return BASE_IMAGE


def _import(root: Path, digest: str) -> None:
    changes = [f"ENV PATH={BASE_PATH}", "ENV LANG=C.UTF-8", f"LABEL {INPUTS_LABEL}={digest}", 'CMD ["python3"]']
    cmd = ["podman", "import", *(a for c in changes for a in ("--change", c)), "-", BASE_IMAGE]
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    imp = subprocess.run(cmd, stdin=tar.stdout, env=podman_env(), capture_output=True, text=True, check=False)
    assert tar.stdout is not None
    tar.stdout.close()
    if tar.wait() != 0 or imp.returncode != 0:
        raise ContainerToolError(f"podman import of the base failed: {imp.stderr.strip()[-1000:]}")


@dataclass
class Built:
    target: str
    image: str
    seconds: float


#: Where a build sees the host's CA bundle (a TLS-intercepting proxy's CA is in it, if any).
BUILD_CA_PATH = "/run/edgeopt/ca-certificates.crt"


def host_ca_bundle(env: dict[str, str] | None = None) -> Path | None:
    """The CA bundle this machine's pip trusts: PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE or the system's."""
    env = dict(os.environ if env is None else env)
    for candidate in (
        env.get("PIP_CERT"),
        env.get("REQUESTS_CA_BUNDLE"),
        env.get("SSL_CERT_FILE"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    return None


def build_command(target: str, base: str, context: Path = ROOT, ca_bundle: Path | None = None) -> list[str]:
    """``podman build`` of one Dockerfile target from the stand-in base (pure: unit-tested).

    The host's CA bundle is mounted read-only and named by the PIP_CERT build
    argument: pip in the build then trusts what pip on the host trusts.
    """
    ca = []
    if ca_bundle is not None:
        ca = ["--volume", f"{ca_bundle}:{BUILD_CA_PATH}:ro", "--build-arg", f"PIP_CERT={BUILD_CA_PATH}"]
    return [
        "podman",
        "build",
        "--layers",
        "--target",
        target,
        "--tag",
        image_name(target),
        "--build-arg",
        f"PYTHON_BASE={base}",
        *ca,
        "--label",
        f"io.edgeopt.version={__version__}",
        "--file",
        str(context / "Dockerfile"),
        str(context),
    ]


def build_target(target: str, base: str | None = None) -> Built:
    """Build one target (cached by podman's layers); the build log goes to ~/.cache/edgeopt/images/."""
    base = base or build_base()
    log_path = cache_dir() / "images" / f"build-{target}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        cmd = build_command(target, base, ca_bundle=host_ca_bundle())
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=podman_env(), check=False)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise ContainerToolError(
            f"podman build --target {target} failed after {seconds:.0f}s " f"(full log: {log_path}):\n{tail}"
        )
    return Built(target, image_name(target), seconds)


def build_images(targets: list[str] | None = None) -> list[Built]:
    base = build_base()
    built = [build_target(t, base) for t in (targets or list(LOCAL_TARGETS))]
    prune_superseded()
    return built


def prune_superseded() -> None:
    """Remove our own images that a rebuild left untagged (never anyone else's: filtered by our label)."""
    subprocess.run(
        ["podman", "image", "prune", "--force", "--filter", "label=io.edgeopt.version"],
        env=podman_env(),
        capture_output=True,
        check=False,
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """``edgeopt-dev images [TARGET...]`` (wired in by cli.py)."""
    parser.add_argument(
        "targets", nargs="*", metavar="TARGET", help=f"Dockerfile targets to build (default: {' '.join(LOCAL_TARGETS)})"
    )
    parser.add_argument("--base-only", action="store_true", help="only install the tools and build the base")
    parser.add_argument("--rebuild-base", action="store_true", help="debootstrap the base again even if current")


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    try:
        base = build_base(force=args.rebuild_base)
        built = [] if args.base_only else build_images(args.targets or None)
    except ContainerToolError as exc:
        print(f"edgeopt-dev images: error: {exc}", file=sys.stderr)
        return 2
    print(f"{'base':<16} {base}")
    for b in built:
        size = image_size(b.image) / 1e6
        print(f"{b.target:<16} {b.image:<40} {size:7.0f} MB  {b.seconds:6.1f}s")
    print(f"total {time.monotonic() - t0:.0f}s; run them with CONTAINERS_CONF={containers_conf()} podman run ...")
    return 0
