"""The ``edgeopt-dev`` command: the dev harness's own script (issue 24).

What runs edgeopt for real on one machine (the control plane, the images,
the demo, sample models, a local Triton) is harness, not product: the images
never carry it, and the product's ``edgeopt`` command never imports it.  It
is installed from a checkout by ``make setup`` (``pip install -e ./harness``),
which puts ``.venv/bin/edgeopt-dev`` next to ``.venv/bin/edgeopt``.

As in ``edgeopt.cli``, each subcommand is a module's ``configure(parser)`` and
``run(args) -> int`` pair, and only the chosen one is imported, so
``edgeopt-dev --help`` and ``edgeopt-dev down`` never load TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass

from edgeopt.cli import dispatch


@dataclass(frozen=True)
class Command:
    """Where a subcommand lives: its module and the names of its two functions there."""

    module: str
    help: str
    configure: str = "configure"
    run: str = "run"


COMMANDS: dict[str, Command] = {
    "build": Command(
        "edgeopt_dev.command",
        "build (or find cached) the control plane's binaries, kubectl, helm and kube-score from their Go modules",
        "configure_build",
        "run_build",
    ),
    "images": Command("edgeopt_dev.images", "install podman & co, build the base and the Dockerfile's images (cached)"),
    "up": Command("edgeopt_dev.command", "start the local control plane and the node agent", "configure_up", "run_up"),
    "down": Command("edgeopt_dev.command", "stop everything `up` started in DIR", "configure_down", "run_down"),
    "demo": Command("edgeopt_dev.demo", "run the whole path locally, end to end"),
    "samples": Command("edgeopt_dev.samples", "write small real TensorFlow models for examples, tests and benchmarks"),
    "serve": Command(
        "edgeopt_dev.triton_server", "run the local tritonserver (the nvidia-pytriton wheel's) on a model repository"
    ),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeopt-dev",
        description="The edgeopt development harness: a local control plane, images, the demo, samples, Triton.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help)
        if name == chosen:  # import only the command being run
            module = importlib.import_module(command.module)
            getattr(module, command.configure)(p)
            p.set_defaults(_run=getattr(module, command.run))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return dispatch(build_parser(argv), argv, "edgeopt-dev")


if __name__ == "__main__":
    sys.exit(main())
