"""The ``edgeopt`` command.

Each subcommand lives in its own module with ``configure(parser)`` and
``run(args) -> int``.  ``dev``, ``demo`` and ``samples`` belong to the dev
harness (``harness/edgeopt_dev``, installed from a checkout by ``make
setup``), which the images never carry; without it they say so.  Those modules import only the standard library at the
top, so ``edgeopt convert`` works in the converter image (no kopf) and
``edgeopt operator`` in the operator image (no TensorFlow).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from edgeopt import __version__
from edgeopt.errors import EdgeoptError

COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("edgeopt.converter.command", "load, freeze, optimize, TF-TRT, validate and publish a model"),
    "inspect": ("edgeopt.converter.inspection", "list a model's ops, placeholders, likely outputs and signatures"),
    "triton": ("edgeopt.triton.command", "run the real Triton server locally"),
    "dev": ("edgeopt_dev.command", "local control plane: build binaries, up, down"),
    "operator": ("edgeopt.operator.command", "run the OptimizedModel operator"),
    "demo": ("edgeopt_dev.demo", "run the whole path locally, end to end"),
    "samples": ("edgeopt_dev.samples", "write small real TensorFlow models for examples, tests and benchmarks"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeopt", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"edgeopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == chosen:  # import only the command being run
            mod = _command_module(name, module)
            mod.configure(p)
            p.set_defaults(_run=mod.run)
    return parser


#: Commands that live in the dev harness (a separate distribution, never in the images).
HARNESS = "edgeopt_dev"


def _command_module(name: str, module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != HARNESS or not module.startswith(HARNESS + "."):
            raise
        raise SystemExit(
            f"edgeopt {name}: error: this command belongs to the development harness ({HARNESS}), which is not "
            "installed here (the images carry the product only); run it from a source checkout after `make setup`"
        ) from None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except EdgeoptError as exc:
        print(f"edgeopt {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
