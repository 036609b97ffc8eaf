"""``edgeopt triton load|unload|index``: drive a running Triton (explicit model control) from the command line.

They work against any Triton: the chart's, your own, or the local one the dev
harness starts (``edgeopt-dev serve``, which the product never imports).
Top-level imports are stdlib only (see edgeopt.cli).
"""

from __future__ import annotations

import argparse
import time


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="triton_command", metavar="SUBCOMMAND", required=True)
    load = sub.add_parser("load", help="ask a running Triton (explicit mode) to (re)load a model, then smoke-test it")
    load.add_argument("model", help="model name in the repository")
    load.add_argument("--url", default="http://127.0.0.1:8000", help="Triton HTTP URL")
    load.add_argument("--no-smoke", action="store_true", help="skip the zero-input smoke inference")
    load.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the load")

    unload = sub.add_parser("unload", help="ask a running Triton to unload a model")
    unload.add_argument("model")
    unload.add_argument("--url", default="http://127.0.0.1:8000", help="Triton HTTP URL")

    index = sub.add_parser("index", help="list the repository as Triton sees it (name, version, state)")
    index.add_argument("--url", default="http://127.0.0.1:8000", help="Triton HTTP URL")


def run(args: argparse.Namespace) -> int:
    """load / unload / index against a running server (ServingError -> exit code via edgeopt.cli)."""
    from edgeopt.triton.client import TritonClient

    client = TritonClient(args.url, load_timeout=getattr(args, "timeout", 300.0))
    if args.triton_command == "index":
        for entry in client.repository_index():
            reason = f"  ({entry['reason']})" if entry.get("reason") else ""
            print(f"{entry.get('name', '?'):32} {entry.get('version', '-'):>7} {entry.get('state', '-')}{reason}")
        return 0
    if args.triton_command == "unload":
        client.unload(args.model)
        print(f"unloaded {args.model}")
        return 0
    started = time.monotonic()
    client.load(args.model)
    versions = client.ready_versions(args.model)
    print(f"loaded {args.model} in {time.monotonic() - started:.2f}s; ready versions: {versions}")
    if not args.no_smoke:
        smoke = client.smoke_infer(args.model)
        print(f"smoke inference: {smoke.latency_ms:.1f} ms, outputs {smoke.outputs}")
    return 0
