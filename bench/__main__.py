"""``python -m bench [--only converter,serving,operator,publish,seed] [--quick]`` (``make bench``).

Runs the chosen areas one after the other (they share two cores with nothing
of ours), prints the markdown table and writes the day's results file.  An
area that breaks is reported in the table and the file with its error, and the
others still run; the exit code is 1 then, so a broken benchmark is noticed.
A missed target is a result, not an error: the exit code stays 0.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import shutil
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from bench.context import Context
from bench.report import AreaResult, Row, markdown_table, results_path, verdict, write_results

#: area name -> module (each has ``run(ctx) -> AreaResult``), in run order.
AREAS = {
    "converter": "bench.converter",
    "serving": "bench.serving",
    "operator": "bench.operator_scale",
    "publish": "bench.publish",
    "onnx": "bench.onnx_paths",  # issue 12: ORT FP32/INT8 vs TF, digits INT8 accuracy
    "seed": "bench.seed",  # issue 11: quantize_weights size/error, XLA latency
}
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help=f"comma list of areas (default all): {','.join(AREAS)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few iterations (CI keeps the code working)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where <UTC date>.json goes")
    parser.add_argument("--workdir", type=Path, help="scratch space (default: a fresh temp dir, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch space (models, logs)")
    args = parser.parse_args(argv)
    names = [a.strip() for a in args.only.split(",") if a.strip()] or list(AREAS)
    unknown = [a for a in names if a not in AREAS]
    if unknown:
        parser.error(f"unknown area(s) {', '.join(unknown)}; choose from {', '.join(AREAS)}")
    args.areas = names
    return args


def run_area(name: str, ctx: Context) -> AreaResult:
    started = time.monotonic()
    ctx.log(f"=== {name}{' (quick)' if ctx.quick else ''}")
    try:
        module = importlib.import_module(AREAS[name])
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
        for name in args.areas:
            results.append(run_area(name, ctx))
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
    write_results(path, run)
    print()
    print(markdown_table(rows))
    print()
    print(verdict(rows))
    print(f"results: {path}")
    return 1 if any(res.error for res in results) else 0


def _cpus() -> int | None:
    import os

    return os.cpu_count()


if __name__ == "__main__":
    sys.exit(main())
