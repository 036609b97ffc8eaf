"""``edgeopt-dev build|up|down``: the local control plane from the command line.

``up`` runs in the foreground by default (Ctrl-C tears everything down), or
returns once ready with ``--detach`` and leaves ``down`` to stop it.
Top-level imports stay in the standard library, as for every subcommand
(edgeopt_dev.cli imports only the module of the command being run).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path(".local/dev")


def configure_build(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Build (or find cached) etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, helm and "
        "kube-score from their Go modules into the cache (kueue only by name)."
    )
    parser.add_argument("names", nargs="*", help="only these binaries")


def configure_up(parser: argparse.ArgumentParser) -> None:
    parser.description = "Start etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the node agent."
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"state folder (default {DEFAULT_DIR})")
    parser.add_argument("--detach", action="store_true", help="return once ready; stop later with `edgeopt-dev down`")
    parser.add_argument(
        "--kueue",
        action="store_true",
        help="also install and start Kueue (built from its Go module, sigs.k8s.io/kueue), "
        "the batch/job integration only",
    )


def configure_down(parser: argparse.ArgumentParser) -> None:
    parser.description = "Stop everything `edgeopt-dev up` started in DIR."
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"state folder (default {DEFAULT_DIR})")


def run_build(args: argparse.Namespace) -> int:
    from edgeopt_dev.binaries import BINARIES, BuildError, ensure_binaries

    try:
        paths = ensure_binaries(args.names or None)
    except BuildError as exc:
        print(f"edgeopt-dev build: error: {exc}", file=sys.stderr)
        return 2
    versions = {b.name: b.version for b in BINARIES}
    for name, path in paths.items():
        print(f"{name:<24} {versions[name]:<9} {path}")
    return 0


def _usage(cp: Any, kubectl: Path, detached: bool) -> str:
    stop = f"edgeopt-dev down --dir {cp.dir}" if detached else "Ctrl-C (or `edgeopt-dev down --dir DIR`)"
    return "\n".join(
        [
            f"Kubernetes control plane ready at {cp.server}",
            "",
            f"  export KUBECONFIG={cp.kubeconfig}",
            f"  {kubectl} get namespaces",
            "",
            f"  PVC claim NAME      -> {cp.dir / 'pvc'}/NAME/",
            f"  logs                -> {cp.dir / 'logs'}/ (container logs: <namespace>_<pod>.log)",
            "  Jobs and Deployments run through the real controllers; every Pod runs on node edgeopt-local",
            "  as an OCI container (podman, runc) from a local image (nothing is pulled: `edgeopt-dev images`).",
            f"  stop                -> {stop}",
        ]
    )


def run_up(args: argparse.Namespace) -> int:
    from edgeopt_dev.binaries import BuildError, ensure_binaries
    from edgeopt_dev.controlplane import ControlPlaneError, down, up, wait_foreground

    try:
        kubectl = ensure_binaries(["kubectl", *(["kueue"] if args.kueue else [])])["kubectl"]
        cp = up(args.dir, die_with_parent=not args.detach)
    except BuildError as exc:
        print(f"edgeopt-dev up: error: {exc}", file=sys.stderr)
        return 2
    if args.kueue:
        from edgeopt_dev import kueue

        try:
            kueue.start(cp, die_with_parent=not args.detach)
        except ControlPlaneError as exc:
            print(f"edgeopt-dev up: error: Kueue did not start: {exc}", file=sys.stderr)
            down(cp.dir)
            return 1
    print(_usage(cp, kubectl, args.detach), flush=True)
    if args.kueue:
        print(
            f"  Kueue               -> {cp.dir / 'logs' / 'kueue.log'} (batch/job; label Jobs "
            "kueue.x-k8s.io/queue-name)",
            flush=True,
        )
    if args.detach:
        return 0

    def terminate(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)  # also when started with SIGINT ignored (a `&` job)
    try:
        gone = wait_foreground(cp)
        print(f"{gone} exited (see {cp.dir / 'logs' / (gone + '.log')}); stopping the rest", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 0
    print("stopping the control plane ...", file=sys.stderr, flush=True)
    down(cp.dir)
    return code


def run_down(args: argparse.Namespace) -> int:
    from edgeopt_dev.controlplane import down

    stopped = down(args.dir)
    print(f"stopped: {', '.join(stopped)}" if stopped else f"nothing was running in {args.dir.resolve()}")
    return 0
