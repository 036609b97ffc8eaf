"""``edgeopt operator``: its flags, and that loading the command stays light."""

from __future__ import annotations

import argparse
import subprocess
import sys

from edgeopt.operator import command


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.configure(parser)
    return parser.parse_args(list(argv))


def test_flags() -> None:
    args = parse(
        "-n",
        "edge",
        "--namespace",
        "lab",
        "--peering",
        "edgeopt",
        "--priority",
        "100",
        "--liveness",
        "http://0.0.0.0:8080/healthz",
        "--verbose",
    )
    assert args.namespace == ["edge", "lab"]
    assert (args.peering, args.priority, args.verbose, args.standalone) == ("edgeopt", 100, True, False)
    assert args.liveness == "http://0.0.0.0:8080/healthz"
    assert parse().namespace == [] and parse("--standalone").standalone


def test_importing_the_command_loads_neither_kopf_nor_tensorflow() -> None:
    code = (
        "import sys, edgeopt.operator.command; "
        "print(sorted(m for m in ('kopf', 'kubernetes', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_importing_the_handlers_never_loads_tensorflow() -> None:
    code = "import sys, edgeopt.operator.handlers; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
