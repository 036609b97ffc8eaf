"""Build the real control-plane binaries from their Go modules, at pinned versions.

No Docker engine runs on our test machines, so kind/k3d are out; like envtest,
we build etcd, kube-apiserver, kube-controller-manager and kube-scheduler
ourselves, plus helm and kubectl, and cache them under ``~/.cache/edgeopt/bin/<version>/``.

k8s.io/kubernetes cannot be ``go install``-ed directly: its go.mod lists every
``k8s.io/*`` staging module at v0.0.0 with a local ``./staging`` replace.  We
build it through a small wrapper module that re-pins each of those to the
matching ``v0.x`` release.  Standard library only: this runs before any venv.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgeopt_dev.cache import cache_dir

KUBERNETES_VERSION = "v1.32.4"
ETCD_VERSION = "v3.5.17"
HELM_VERSION = "v3.16.4"
#: The third-party chart check the ship tests run (tests/ship/test_kube_score.py).
KUBE_SCORE_VERSION = "v1.19.0"


class BuildError(RuntimeError):
    """A binary could not be built; the message says what to do."""


@dataclass(frozen=True)
class Binary:
    name: str
    version: str
    module: str  # module to wrap
    package: str  # main package to build


BINARIES: tuple[Binary, ...] = (
    Binary("etcd", ETCD_VERSION, "go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/server/v3"),
    Binary("kube-apiserver", KUBERNETES_VERSION, "k8s.io/kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver"),
    Binary(
        "kube-controller-manager",
        KUBERNETES_VERSION,
        "k8s.io/kubernetes",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
    ),
    Binary("kube-scheduler", KUBERNETES_VERSION, "k8s.io/kubernetes", "k8s.io/kubernetes/cmd/kube-scheduler"),
    Binary("kubectl", KUBERNETES_VERSION, "k8s.io/kubernetes", "k8s.io/kubernetes/cmd/kubectl"),
    Binary("helm", HELM_VERSION, "helm.sh/helm/v3", "helm.sh/helm/v3/cmd/helm"),
    Binary("kube-score", KUBE_SCORE_VERSION, "github.com/zegl/kube-score", "github.com/zegl/kube-score/cmd/kube-score"),
)


def cache_root() -> Path:
    return cache_dir() / "bin"


def _log(msg: str) -> None:
    print(f"[build] {msg}", file=sys.stderr, flush=True)


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None)
    if not go:
        raise BuildError(
            "Go is not installed, and the control-plane binaries (etcd, kube-apiserver, "
            "kube-controller-manager, helm) are built from their Go modules. Install Go >= 1.23 "
            "(https://go.dev/doc/install or `apt-get install golang`) and run again."
        )
    return go


def _run(cmd: list[str], cwd: Path, env: dict[str, str], label: str = "", every: float = 20.0) -> None:
    """Run ``cmd``; with a ``label``, report progress every ``every`` seconds.

    ``go build -v`` prints each package as it compiles it, so counting lines
    gives a heartbeat during the minutes a first kube-apiserver build takes.
    """
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    t0 = last = time.monotonic()
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if label and time.monotonic() - last >= every:
            last = time.monotonic()
            _log(f"{label}: {len(lines)} packages compiled, {last - t0:.0f}s so far")
    if proc.wait() != 0:
        tail = "\n".join(line for line in lines[-25:] if line)
        raise BuildError(f"`{' '.join(cmd)}` failed in {cwd}:\n{tail}")


def _staging_replaces(go: str, env: dict[str, str], version: str, work: Path) -> list[str]:
    """Read k8s.io/kubernetes' own go.mod and re-pin each ./staging replace."""
    out = subprocess.run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise BuildError(f"cannot download k8s.io/kubernetes@{version}: {out.stdout or out.stderr}")
    gomod = Path(json.loads(out.stdout)["GoMod"]).read_text()
    staging = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", gomod, flags=re.M)
    if not staging:
        raise BuildError(f"no staging replaces found in k8s.io/kubernetes@{version} go.mod")
    minor = "v0." + version.lstrip("v").split(".", 1)[1]
    return [f"\t{m} => {m} {minor}" for m in staging]


def _build_group(binaries: list[Binary]) -> None:
    go = _go()
    first = binaries[0]
    work = cache_root() / "src" / f"{first.module.replace('/', '_')}-{first.version}"
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
    # The checksum database answers 404 through the module proxy reachable here
    # for some k8s.io modules (k8s.io/kubernetes, k8s.io/controller-manager...);
    # those are exempted by prefix, every other dependency stays verified.
    env["GONOSUMDB"] = ",".join(filter(None, [os.environ.get("GONOSUMDB"), "k8s.io"]))
    replaces: list[str] = []
    if first.module == "k8s.io/kubernetes":
        replaces = _staging_replaces(go, env, first.version, work)
    gomod = "module edgeopt.local/wrap\n\ngo 1.23\n\n" f"require {first.module} {first.version}\n" + (
        ("\nreplace (\n" + "\n".join(replaces) + "\n)\n") if replaces else ""
    )
    (work / "go.mod").write_text(gomod)
    (work / "tools.go").write_text(
        "//go:build tools\n\npackage tools\n\nimport (\n" + "".join(f'\t_ "{b.package}"\n' for b in binaries) + ")\n"
    )
    _log(f"resolving {first.module}@{first.version} (module download, first time only)")
    _run([go, "mod", "tidy", "-e"], work, env)
    for b in binaries:
        out = cache_root() / b.version / b.name
        out.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        _log(f"building {b.name} {b.version} from {b.package} (several minutes on 2 cores)")
        ldflags = ""
        if b.module == "k8s.io/kubernetes":
            ldflags = (
                f"-X k8s.io/component-base/version.gitVersion={b.version} "
                f"-X k8s.io/client-go/pkg/version.gitVersion={b.version} "
                "-X k8s.io/component-base/version.gitMajor=1 "
                f"-X k8s.io/component-base/version.gitMinor={b.version.split('.')[1]}"
            )
        elif b.name == "helm":
            ldflags = f"-X helm.sh/helm/v3/internal/version.version={b.version}"
        elif b.name == "kube-score":
            ldflags = f"-X main.version={b.version.lstrip('v')} -X main.commit={b.version}"
        tmp = out.with_suffix(".tmp")
        _run([go, "build", "-v", "-trimpath", "-ldflags", ldflags, "-o", str(tmp), b.package], work, env, label=b.name)
        os.replace(tmp, out)
        _log(f"built {b.name} in {time.monotonic() - t0:.0f}s -> {out}")


def ensure_binaries(names: list[str] | None = None) -> dict[str, Path]:
    """Return paths to the wanted binaries, building those not cached yet."""
    wanted = [b for b in BINARIES if names is None or b.name in names]
    missing = [b for b in wanted if not (cache_root() / b.version / b.name).exists()]
    groups: dict[tuple[str, str], list[Binary]] = {}
    for b in missing:
        groups.setdefault((b.module, b.version), []).append(b)
    for group in groups.values():
        _build_group(group)
    return {b.name: cache_root() / b.version / b.name for b in wanted}


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or None
    try:
        paths = ensure_binaries(names)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
