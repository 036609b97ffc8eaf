"""The OptimizedModel field reference (docs/reference.md), generated from edgeopt.spec.

The table between the ``<!-- fields:begin -->`` and ``<!-- fields:end -->``
markers is produced here from ``walk_fields`` (names, types, defaults,
constraints, docs), and tests/ship/test_readme.py fails when the page
differs, so the reference cannot drift from the code. Regenerate with:

    .venv/bin/python -m tests.ship.readme_fields --write
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any

from edgeopt.spec import ModelSpec, walk_fields

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"
BEGIN, END = "<!-- fields:begin -->", "<!-- fields:end -->"


def _type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"list of {_type(item)}"
    if origin is dict:
        return "object"
    if dataclasses.is_dataclass(tp):
        return "object"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, str(tp))


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        return "" if f.default is None else f"`{_yaml_scalar(f.default)}`"
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if dataclasses.is_dataclass(value):
            return ""
        return f"`{_yaml_scalar(value)}`" if value else ""
    return "**required**"


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _constraints(f: dataclasses.Field[Any]) -> str:
    meta = f.metadata
    parts = []
    if meta.get("enum"):
        parts.append(" \\| ".join(meta["enum"]))
    if meta.get("minimum") is not None:
        parts.append(f"≥ {meta['minimum']:g}")
    if meta.get("maximum") is not None:
        parts.append(f"≤ {meta['maximum']:g}")
    if meta.get("pattern"):
        parts.append(f"`{meta['pattern']}`".replace("|", "\\|"))
    return ", ".join(parts)


def field_table() -> str:
    rows = ["| Field | Type | Default | Allowed | Meaning |", "|---|---|---|---|---|"]
    for path, f, tp in walk_fields(ModelSpec):
        doc = (f.metadata.get("doc") or "").replace("|", "\\|")
        rows.append(f"| `{path}` | {_type(tp)} | {_default(f)} | {_constraints(f)} | {doc} |")
    return "\n".join(rows)


def render(page_text: str) -> str:
    head, sep, rest = page_text.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"{PAGE.relative_to(PAGE.parents[1])} lacks the {BEGIN} ... {END} markers")
    return f"{head}{BEGIN}\n{field_table()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    text = PAGE.read_text()
    new = render(text)
    if "--write" in argv:
        PAGE.write_text(new)
        return 0
    print(field_table())
    return 0 if new == text else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
