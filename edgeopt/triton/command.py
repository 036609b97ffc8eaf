"""``edgeopt triton serve``: the real tritonserver in the foreground, for the demo and for humans.

Top-level imports are stdlib + edgeopt.errors only (see edgeopt.cli).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="triton_command", metavar="SUBCOMMAND", required=True)
    serve = sub.add_parser("serve", help="run tritonserver (explicit model control) on a model repository")
    serve.add_argument("--repository", required=True, type=Path, help="model repository directory")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve.add_argument("--http-port", type=int, default=None, help="HTTP port (default: a free one)")
    serve.add_argument("--grpc-port", type=int, default=None, help="gRPC port (default: a free one)")
    serve.add_argument("--metrics-port", type=int, default=None, help="metrics port (default: a free one)")
    serve.add_argument(
        "--load-model", action="append", default=[], metavar="NAME", help="load this model at start (repeatable)"
    )
    serve.add_argument("--log-file", type=Path, default=None, help="write the server log here instead of stderr")
    serve.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for /v2/health/live")

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
    if args.triton_command == "serve":
        return serve(args)
    return control(args)


def control(args: argparse.Namespace) -> int:
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


def serve(args: argparse.Namespace) -> int:
    try:  # the launcher for the pytriton wheel's server is the dev harness's, not the product's
        from edgeopt_dev.triton_server import TritonServer
    except ModuleNotFoundError as exc:
        if exc.name != "edgeopt_dev":
            raise
        raise SystemExit(
            "edgeopt triton serve: error: the local Triton launcher belongs to the development harness "
            "(edgeopt_dev), which is not installed here; run it from a source checkout after `make setup`, or "
            "run your own tritonserver (`edgeopt triton load` works against any Triton)"
        ) from None

    repo = args.repository.resolve()
    repo.mkdir(parents=True, exist_ok=True)
    server = TritonServer(
        repo,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_path=args.log_file,
        load_models=args.load_model,
        startup_timeout=args.startup_timeout,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    server.start()
    try:
        print(f"tritonserver ready in {server.startup_seconds:.1f}s", file=sys.stderr)
        print(f"HTTP    {server.http_url}", flush=True)
        print(f"gRPC    {server.grpc_url}")
        print(f"metrics {server.metrics_url}")
        print(f"repository {repo} (explicit model control: POST {server.http_url}/v2/repository/models/NAME/load)")
        sys.stdout.flush()
        while server.is_running():
            time.sleep(0.5)
        code = server.wait()
        print(f"tritonserver exited with code {code}", file=sys.stderr)
        return 1 if code else 0
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
