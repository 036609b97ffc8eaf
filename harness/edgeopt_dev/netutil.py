"""The one ``free_port`` of the harness, its tests and its benchmarks."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` now (``0.0.0.0``: on no address of this machine).

    Someone else may take it before the caller binds it; callers that start a
    server on it retry or say so (controlplane.PortTaken).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
