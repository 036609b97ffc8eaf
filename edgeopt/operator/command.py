"""``edgeopt operator``: run the OptimizedModel operator (kopf, in this process).

Uses the in-cluster service account when it runs in a Pod, else the current
kubeconfig ($KUBECONFIG). Flags override the ``EDGEOPT_*`` environment the
chart sets. Only the standard library and edgeopt.spec/errors are imported at
the top: kopf and the kubernetes client load when the command runs.
"""

from __future__ import annotations

import argparse
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0] if __doc__ else None
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeatable); default: EDGEOPT_NAMESPACES, else all namespaces",
    )
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="do not use kopf peering (a single replica, or local runs)",
    )
    parser.add_argument("--peering", metavar="NAME", help="kopf peering name for active/standby replicas")
    parser.add_argument("--priority", type=int, help="peering priority; the highest live replica reconciles")
    parser.add_argument(
        "--liveness",
        metavar="URL",
        help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz (default: EDGEOPT_LIVENESS_PORT on 0.0.0.0)",
    )
    parser.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (default: EDGEOPT_METRICS_PORT)")
    parser.add_argument(
        "--max-concurrent-conversions",
        type=int,
        help="GPU conversion Jobs allowed at once per GPU kind (default: EDGEOPT_MAX_CONCURRENT_CONVERSIONS or 1)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (kopf and edgeopt)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    import kopf

    from edgeopt.operator import handlers  # noqa: F401 - registers the handlers
    from edgeopt.operator.settings import OperatorSettings

    config = OperatorSettings.from_env().with_overrides(
        namespaces=tuple(args.namespace) or None,
        peering_name=args.peering,
        priority=args.priority,
        metrics_port=args.metrics_port,
        max_concurrent_conversions=args.max_concurrent_conversions,
    )
    kopf.configure(verbose=args.verbose, quiet=args.quiet, log_prefix=True)  # [ns/name] on object logs
    logging.getLogger("edgeopt").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    liveness = args.liveness
    if liveness is None and config.liveness_port:
        liveness = f"http://0.0.0.0:{config.liveness_port}/healthz"
    standalone = bool(args.standalone or not config.peering_name)
    options: dict[str, Any] = {
        "standalone": standalone,
        "priority": config.priority,
        "liveness_endpoint": liveness,
        "memo": kopf.Memo(config=config),
    }
    if not standalone:
        options["peering_name"] = config.peering_name
    if config.namespaces:
        options["namespaces"] = list(config.namespaces)
    else:
        options["clusterwide"] = True
    asyncio.run(kopf.operator(**options))
    return 0
