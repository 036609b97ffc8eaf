"""``edgeopt`` is the product's command, ``edgeopt-dev`` the harness's (issue 24).

The old spellings of the dev commands name their replacement and exit 2;
``edgeopt`` never imports the harness, for any command; ``edgeopt-dev``
lists its commands and each one's module really has the functions its
table names.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from edgeopt.cli import COMMANDS, MOVED, main

ROOT = Path(__file__).resolve().parents[2]

OLD_SPELLINGS = [
    (["dev", "up", "--dir", ".local/dev", "--detach"], "edgeopt-dev up --dir .local/dev --detach"),
    (["dev", "images", "triton-cpu"], "edgeopt-dev images triton-cpu"),
    (["dev", "build"], "edgeopt-dev build"),
    (["dev", "down"], "edgeopt-dev down"),
    (["demo", "--keep"], "edgeopt-dev demo --keep"),
    (["samples", "add", "--dir", "/tmp/a b"], "edgeopt-dev samples add --dir '/tmp/a b'"),
    (["triton", "serve", "--repository", "repo"], "edgeopt-dev serve --repository repo"),
]


@pytest.mark.parametrize(("argv", "replacement"), OLD_SPELLINGS)
def test_an_old_spelling_names_its_edgeopt_dev_command_and_exits_2(
    argv: list[str], replacement: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err  # one line
    assert f"is now `{replacement}`" in err, err


def test_every_moved_spelling_is_covered_and_none_is_a_product_command() -> None:
    covered = {old for old in MOVED for argv, _ in OLD_SPELLINGS if tuple(argv[: len(old)]) == old}
    assert covered == set(MOVED)
    assert not {old[0] for old in MOVED if len(old) == 1} & set(COMMANDS)


def test_product_commands_are_not_mistaken_for_moved_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:  # `triton` stays a product command; only `triton serve` moved
        main(["triton", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "load" in out and "index" in out and "serve" not in out


def _isolated(*argv: str) -> subprocess.CompletedProcess[str]:
    """``edgeopt ARGV`` where the harness cannot be found at all: -I -S, the repository root alone on sys.path."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from edgeopt.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "assert 'edgeopt_dev' not in sys.modules\n"
        "sys.exit(rc)\n"
    )
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, *argv], capture_output=True, text=True, timeout=60, cwd="/"
    )


def test_edgeopt_works_where_the_harness_is_absent() -> None:
    assert "edgeopt_dev" not in {p.name for p in ROOT.iterdir()}, "the harness must not be importable from the root"
    for argv in (["--help"], ["triton", "--help"], ["--version"]):
        proc = _isolated(*argv)
        assert proc.returncode == 0, (argv, proc.stderr)
    helped = _isolated("--help").stdout
    for gone in ("dev", "demo", "samples"):
        assert f"\n    {gone} " not in helped, f"`edgeopt --help` still lists {gone}"
    proc = _isolated("triton", "serve", "--repository", "r")
    assert proc.returncode == 2 and "`edgeopt-dev serve --repository r`" in proc.stderr, proc.stderr


def test_no_edgeopt_command_imports_the_harness() -> None:
    """Every command's parser is built with an import hook that refuses ``edgeopt_dev``, the harness installed."""
    code = (
        "import importlib.abc, sys\n"
        "class Refuse(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'edgeopt_dev':\n"
        "            raise ImportError(f'edgeopt imported the harness: {name}')\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "from edgeopt.cli import COMMANDS, main\n"
        "for name in COMMANDS:\n"
        "    try:\n"
        "        main([name, '--help'])\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, (name, exc.code)\n"
        "print(sorted(COMMANDS))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "operator" in proc.stdout


def test_edgeopt_dev_help_lists_its_commands() -> None:
    from edgeopt_dev.cli import COMMANDS as DEV_COMMANDS

    proc = subprocess.run(
        [sys.executable, "-m", "edgeopt_dev.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: edgeopt-dev")
    for name in ("build", "images", "up", "down", "demo", "samples", "serve"):
        assert name in DEV_COMMANDS
        assert f"\n    {name} " in proc.stdout, f"`edgeopt-dev --help` does not list {name}"


def test_every_edgeopt_dev_command_has_its_functions_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    from edgeopt_dev.cli import COMMANDS as DEV_COMMANDS
    from edgeopt_dev.cli import main as dev_main

    for name, command in DEV_COMMANDS.items():
        module = importlib.import_module(command.module)
        assert callable(getattr(module, command.configure)) and callable(getattr(module, command.run)), name
        with pytest.raises(SystemExit) as exit_:
            dev_main([name, "--help"])
        assert exit_.value.code == 0, name
        assert capsys.readouterr().out.startswith(f"usage: edgeopt-dev {name}"), name
    assert dev_main([]) == 2  # no command: the help, and a usage error
