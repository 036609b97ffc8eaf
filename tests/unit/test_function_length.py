"""No function in ``edgeopt/`` is over 60 lines (the house rule), checked at lint time with ``ast``.

A function's length is from its ``def`` line to its last line, docstring and
comments included; nested functions and methods count on their own too (and
inside their parent). ``ALLOWED`` names the functions still over the limit
while the branch that splits them lands; it only shrinks: the second test
fails when an entry is no longer needed.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "edgeopt"
LIMIT = 60

#: "path::qualified.name" -> why it is still here (who splits it).
ALLOWED: dict[str, str] = {}


def function_lengths(path: Path) -> dict[str, int]:
    """``qualified.name`` -> lines, for every function and method in the module at ``path``."""
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    lengths[name] = (child.end_lineno or child.lineno) - child.lineno + 1
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(), filename=str(path)), "")
    return lengths


def too_long() -> dict[str, int]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        for name, lines in function_lengths(path).items():
            if lines > LIMIT:
                found[f"{rel}::{name}"] = lines
    return found


def test_the_measure_counts_def_to_last_line_and_nested_functions(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    module = tmp_path / "m.py"
    module.write_text(
        f"class C:\n    def m(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n\n"
        f"def f():\n    def g():\n        pass\n{body}\n"
    )
    assert function_lengths(module) == {"C.m": LIMIT + 1, "f": LIMIT + 3, "f.g": 2}


def test_no_function_in_edgeopt_is_over_the_limit() -> None:
    over = {name: lines for name, lines in too_long().items() if name not in ALLOWED}
    assert not over, f"functions over {LIMIT} lines (split them into named steps): " + ", ".join(
        f"{name} ({lines})" for name, lines in sorted(over.items())
    )


def test_the_allow_list_holds_only_functions_still_over_the_limit() -> None:
    stale = sorted(set(ALLOWED) - set(too_long()))
    assert not stale, f"now within {LIMIT} lines (or gone): remove from ALLOWED: {', '.join(stale)}"
