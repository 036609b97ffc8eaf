"""``python -m bench [--only converter,serving,operator,publish,onnx,seed] [--quick]`` (``make bench``).

Runs the chosen areas one after the other (they share two cores with nothing
of ours), prints ONE markdown table and writes the day's results file and its
chart.  An area that breaks is reported in the table and the file with its
error, and the others still run; the exit code is 1 then, so a broken
benchmark is noticed.  A missed target is a result, not an error: the exit
code stays 0.

An area is a module of this package with a top-level ``AREA = "name"`` and a
``run(ctx) -> AreaResult``: :func:`discover_areas` finds it without importing
it, so a new area is a new file (see bench/README.md).  The core areas run
first in the order of :data:`AREAS` (serving reuses the converter's models);
discovered ones follow in file-name order.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import re
import shutil
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from bench.chart import chart_path, draw
from bench.context import Context
from bench.report import AreaResult, Row, markdown_table, points_of, results_path, verdict, write_results

#: area name -> module (each has ``run(ctx) -> AreaResult``), in run order.
AREAS = {
    "converter": "bench.converter",
    "serving": "bench.serving",
    "operator": "bench.operator_scale",
    "publish": "bench.publish",
}
PACKAGE_DIR = Path(__file__).resolve().parent
RESULTS_DIR = PACKAGE_DIR / "results"
_AREA_LINE = re.compile(r'^AREA\s*=\s*"([a-z0-9_-]+)"', re.MULTILINE)


def discover_areas(package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """:data:`AREAS` plus every other ``bench/*.py`` that declares ``AREA = "name"`` at top level and a ``run``."""
    found = dict(AREAS)
    for path in sorted(package_dir.glob("*.py")):
        module = f"bench.{path.stem}"
        if path.stem.startswith("_") or module in found.values():
            continue
        text = path.read_text(errors="replace")
        m = _AREA_LINE.search(text)
        if m and re.search(r"^def run\(", text, re.MULTILINE):
            if m.group(1) in found:
                raise SystemExit(f"bench: area {m.group(1)!r} is declared by both {found[m.group(1)]} and {module}")
            found[m.group(1)] = module
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help=f"comma list of areas (default all): {','.join(AREAS)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few iterations (CI keeps the code working)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where <UTC date>.json goes")
    parser.add_argument("--workdir", type=Path, help="scratch space (default: a fresh temp dir, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch space (models, logs)")
    args = parser.parse_args(argv)
    areas = discover_areas()
    names = [a.strip() for a in args.only.split(",") if a.strip()] or list(areas)
    unknown = [a for a in names if a not in areas]
    if unknown:
        parser.error(f"unknown area(s) {', '.join(unknown)}; choose from {', '.join(areas)}")
    args.areas = {name: areas[name] for name in names}
    return args


def run_area(name: str, module_name: str, ctx: Context) -> AreaResult:
    started = time.monotonic()
    ctx.log(f"=== {name}{' (quick)' if ctx.quick else ''}")
    try:
        module = importlib.import_module(module_name)
        result: AreaResult = module.run(ctx)
    except Exception as exc:
        ctx.log(f"{name} broke:\n{traceback.format_exc()}")
        result = AreaResult(name, error=f"{type(exc).__name__}: {exc}")
        result.rows.append(Row(name, f"(benchmark failed: {type(exc).__name__}: {str(exc)[:160]})", None))
    result.seconds = time.monotonic() - started
    ctx.log(f"=== {name} done in {result.seconds:.0f}s")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(timezone.utc)
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="edgeopt-bench-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(quick=args.quick, workdir=work)
    results: list[AreaResult] = []
    try:
        for name, module_name in args.areas.items():
            results.append(run_area(name, module_name, ctx))
    finally:
        ctx.close()
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    rows = [r for res in results for r in res.rows]
    run = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": _cpus()},
        "areas": {res.area: res.as_dict() for res in results},
    }
    path = results_path(args.results_dir, started, quick=args.quick)
    merged = write_results(path, run)
    chart = _chart(merged, path, started, args.quick)
    print()
    print(markdown_table(rows))
    print()
    print(verdict(rows))
    print(f"results: {path}" + (f"\nchart:   {chart}" if chart else ""))
    return 1 if any(res.error for res in results) else 0


def _chart(merged: dict[str, object], path: Path, started: datetime, quick: bool) -> Path | None:
    """The day's chart from every area in the day's file; a chart that fails never hides the table."""
    title = f"edgeopt bench {started:%Y-%m-%d %H:%M} UTC{' (quick)' if quick else ''}, {_cpus()} CPUs, shared machine"
    try:
        return draw(points_of(merged), chart_path(path), title=title)
    except Exception as exc:
        print(f"[bench] the chart failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def _cpus() -> int | None:
    import os

    return os.cpu_count()


if __name__ == "__main__":
    sys.exit(main())
