"""The ``edgeopt`` command.

Each subcommand lives in its own module with ``configure(parser)`` and
``run(args) -> int``.  Those modules import only the standard library at the
top, so ``edgeopt convert`` works in the converter image (no kopf) and
``edgeopt operator`` in the operator image (no TensorFlow).  The commands that
run edgeopt for real on one machine (``edgeopt dev``, ``demo``, ``samples`` and
``triton serve`` before issue 24) are the dev harness's own script,
``edgeopt-dev``; typed here, they name it and exit 2, without importing it.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys

from edgeopt import __version__
from edgeopt.errors import EdgeoptError

COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("edgeopt.converter.command", "load, freeze, optimize, TF-TRT, validate and publish a model"),
    "inspect": ("edgeopt.converter.inspection", "list a model's ops, placeholders, likely outputs and signatures"),
    "triton": ("edgeopt.triton.command", "load, unload or list models on a running Triton"),
    "operator": ("edgeopt.operator.command", "run the OptimizedModel operator"),
}

#: Old spellings (before issue 24) -> the ``edgeopt-dev`` words that replace them.
MOVED: dict[tuple[str, ...], tuple[str, ...]] = {
    ("dev",): (),
    ("demo",): ("demo",),
    ("samples",): ("samples",),
    ("triton", "serve"): ("serve",),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeopt", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"edgeopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == chosen:  # import only the command being run
            mod = importlib.import_module(module)
            mod.configure(p)
            p.set_defaults(_run=mod.run)
    return parser


def moved(argv: list[str]) -> str | None:
    """The ``edgeopt-dev`` command line that replaces ``argv``, if it names a moved command."""
    words = [i for i, a in enumerate(argv) if not a.startswith("-")]
    for old, new in MOVED.items():
        at = words[: len(old)]
        if len(at) == len(old) and tuple(argv[i] for i in at) == old:
            rest = [a for i, a in enumerate(argv) if i not in at]
            return shlex.join(["edgeopt-dev", *new, *rest])
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    replacement = moved(argv)
    if replacement:
        print(
            f"edgeopt: error: `edgeopt {shlex.join(argv)}` is now `{replacement}`, the dev harness's own script "
            "(a source checkout's .venv/bin after `make setup`; never in the images)",
            file=sys.stderr,
        )
        return 2
    return dispatch(build_parser(argv), argv, "edgeopt")


def dispatch(parser: argparse.ArgumentParser, argv: list[str], prog: str) -> int:
    """Run the chosen command; an EdgeoptError is one ``PROG COMMAND: error: ...`` line and its exit code.

    Shared with the dev harness's ``edgeopt-dev`` (harness/edgeopt_dev/cli.py), which builds its own parser.
    """
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except EdgeoptError as exc:
        print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
