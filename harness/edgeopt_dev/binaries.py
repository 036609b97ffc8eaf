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
#: Kueue, the optional job queue (``edgeopt-dev up --kueue``); its CRDs come from
#: the same module (see ``kueue_crd_dir``).  v0.17.0 is built with client-go
#: v0.35 and runs against our v1.32 kube-apiserver (tests/k8s/test_kueue.py).
KUEUE_VERSION = "v0.17.0"


class BuildError(RuntimeError):
    """A binary could not be built; the message says what to do."""


@dataclass(frozen=True)
class Binary:
    name: str
    version: str
    module: str  # module to wrap
    package: str  # main package to build
    optional: bool = False  # built only when asked for by name


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
    Binary("kueue", KUEUE_VERSION, "sigs.k8s.io/kueue", "sigs.k8s.io/kueue/cmd/kueue", optional=True),
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


def _module_gomod(go: str, env: dict[str, str], module: str, version: str, work: Path) -> str:
    """Download ``module@version`` and return its own go.mod text."""
    out = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise BuildError(f"cannot download {module}@{version}: {out.stdout or out.stderr}")
    return Path(json.loads(out.stdout)["GoMod"]).read_text()


def _go_directive(gomod: str) -> str:
    """The wrapper's ``go`` line: at least 1.23, or what the wrapped module asks for."""
    found = re.search(r"^go\s+(\d+)\.(\d+)", gomod, flags=re.M)
    wanted = (int(found.group(1)), int(found.group(2))) if found else (1, 23)
    major, minor = max(wanted, (1, 23))
    return f"{major}.{minor}"


def _staging_replaces(gomod: str, version: str) -> list[str]:
    """Read k8s.io/kubernetes' own go.mod and re-pin each ./staging replace."""
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
    wrapped = _module_gomod(go, env, first.module, first.version, work)
    replaces: list[str] = []
    if first.module == "k8s.io/kubernetes":
        replaces = _staging_replaces(wrapped, first.version)
    gomod = f"module edgeopt.local/wrap\n\ngo {_go_directive(wrapped)}\n\nrequire {first.module} {first.version}\n" + (
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
        elif b.name == "kueue":
            ldflags = f"-X sigs.k8s.io/kueue/pkg/version.GitVersion={b.version}"
        elif b.name == "kube-score":
            ldflags = f"-X main.version={b.version.lstrip('v')} -X main.commit={b.version}"
        tmp = out.with_suffix(".tmp")
        _run([go, "build", "-v", "-trimpath", "-ldflags", ldflags, "-o", str(tmp), b.package], work, env, label=b.name)
        os.replace(tmp, out)
        _log(f"built {b.name} in {time.monotonic() - t0:.0f}s -> {out}")


def module_dir(name: str) -> Path:
    """The module-cache folder of the Go module a binary is built from (its manifests, CRDs...)."""
    b = next((b for b in BINARIES if b.name == name), None)
    if b is None:
        raise KeyError(name)
    env = dict(os.environ, GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
    cache_root().mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [_go(), "mod", "download", "-json", f"{b.module}@{b.version}"],
        cwd=cache_root(),
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise BuildError(f"cannot download {b.module}@{b.version}: {out.stdout or out.stderr}")
    return Path(json.loads(out.stdout)["Dir"])


def ensure_binaries(names: list[str] | None = None) -> dict[str, Path]:
    """Return paths to the wanted binaries, building those not cached yet."""
    wanted = [b for b in BINARIES if (names is None and not b.optional) or (names is not None and b.name in names)]
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
