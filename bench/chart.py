"""The PNG next to the results file: latency per model and runtime, and serving throughput by concurrency.

People would rather look than read a table of forty rows, so every area's
chart points (``AreaResult.point``) are drawn from the day's results file:

* one column per model (their latencies differ by 100×, so each gets its
  own linear scale);
* top row: p50 latency at concurrency 1 as bars grouped by batch size, one
  colour per runtime, the value written in the bar, a whisker up to p99
  (the axis stops at 2.5× the tallest bar, so a wild p99 is cut, not squashing the bars);
* then one row per batch size: inferences/s against concurrency, one line
  per runtime, for the models measured at more than one concurrency.

A runtime keeps its colour in every panel, so a new area's runtime
("onnxruntime", "TF XLA") needs no change here.  matplotlib is imported
inside :func:`draw` with the Agg backend (no display), so the pure helpers
are unit-tested without it.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.report import Point

#: Colours in first-seen order of runtimes (matplotlib's tab10, colour-blind friendlier than the default).
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]


def chart_path(results_file: Path) -> Path:
    """``2026-12-01.json`` -> ``2026-12-01.png`` (``.quick.json`` -> ``.quick.png``)."""
    return results_file.with_suffix(".png")


def latest(points: list[Point]) -> list[Point]:
    """One point per (model, runtime, batch, concurrency): the last one reported wins."""
    by_key = {(p.model, p.runtime, p.batch, p.concurrency): p for p in points}
    return list(by_key.values())


def latency_panels(points: list[Point]) -> dict[str, dict[int, dict[str, Point]]]:
    """model -> batch -> runtime -> the concurrency-1 point with a p50 (models in first-reported order)."""
    out: dict[str, dict[int, dict[str, Point]]] = defaultdict(lambda: defaultdict(dict))
    for p in points:
        if p.concurrency == 1 and p.p50_ms is not None:
            out[p.model][p.batch][p.runtime] = p
    return {m: dict(sorted(batches.items())) for m, batches in out.items()}


def throughput_panels(points: list[Point]) -> dict[tuple[int, str], dict[str, list[Point]]]:
    """(batch, model) -> runtime -> points by concurrency, for cells measured at ≥ 2 concurrencies."""
    out: dict[tuple[int, str], dict[str, list[Point]]] = defaultdict(lambda: defaultdict(list))
    for p in points:
        if p.per_second is not None:
            out[(p.batch, p.model)][p.runtime].append(p)
    panels = {}
    for key in sorted(out):
        curves = out[key]
        if len({p.concurrency for c in curves.values() for p in c}) >= 2:
            panels[key] = {rt: sorted(v, key=lambda p: p.concurrency) for rt, v in curves.items()}
    return panels


def runtime_colours(points: list[Point]) -> dict[str, str]:
    names: list[str] = []
    for p in points:
        if p.runtime not in names:
            names.append(p.runtime)
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def draw(points: list[Point], path: Path, *, title: str) -> Path | None:
    """Write the chart; None (and no file) when there is nothing to draw."""
    points = latest(points)
    lat, thr = latency_panels(points), throughput_panels(points)
    if not lat and not thr:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = runtime_colours(points)
    # One column per model; row 0 its latency by batch, then one row of throughput curves per batch.
    models = list(dict.fromkeys([*lat, *(m for _, m in thr)]))
    batches = sorted({b for b, _ in thr})
    rows = (1 if lat else 0) + len(batches)
    fig, axes = plt.subplots(rows, len(models), figsize=(4.6 * len(models), 3.6 * rows), squeeze=False)
    for c, model in enumerate(models):
        r = 0
        if lat:
            if model in lat:
                _latency_bars(axes[0][c], model, lat[model], colours)
            else:
                axes[0][c].set_visible(False)
            r = 1
        for i, batch in enumerate(batches):
            if (batch, model) in thr:
                _throughput_lines(axes[r + i][c], (batch, model), thr[(batch, model)], colours)
            else:
                axes[r + i][c].set_visible(False)
    handles = [plt.Line2D([], [], color=col, lw=8) for col in colours.values()]
    fig.legend(handles, list(colours), loc="upper center", ncol=min(len(colours), 5), frameon=False)
    fig.text(0.5, 0.005, title, ha="center", va="bottom", fontsize=9, color="#555555")
    fig.tight_layout(rect=(0, 0.02, 1, 1 - 0.4 / (3.6 * rows)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _latency_bars(ax: Any, model: str, batches: dict[int, dict[str, Point]], colours: dict[str, str]) -> None:
    """Grouped by batch size, one bar per runtime: p50 as the bar (value written in it), a whisker to p99."""
    runtimes = [r for r in colours if any(r in by_rt for by_rt in batches.values())]
    width = 0.8 / max(len(runtimes), 1)
    for i, runtime in enumerate(runtimes):
        xs, ys, err = [], [], []
        for g, by_rt in enumerate(batches.values()):
            p = by_rt.get(runtime)
            if p is None or p.p50_ms is None:
                continue
            xs.append(g - 0.4 + width * (i + 0.5))
            ys.append(p.p50_ms)
            err.append(max((p.p99_ms or p.p50_ms) - p.p50_ms, 0.0))
        ax.bar(
            xs,
            ys,
            width,
            color=colours[runtime],
            yerr=[[0.0] * len(err), err],
            capsize=2,
            error_kw={"elinewidth": 0.8, "ecolor": "#333333"},
        )
        for x, y in zip(xs, ys, strict=True):
            ax.text(x, 0, f" {y:.3g}", ha="center", va="bottom", fontsize=7, color="white", rotation=90)
    tallest = max((p.p50_ms or 0.0) for by_rt in batches.values() for p in by_rt.values())
    if tallest > 0:
        ax.set_ylim(0, tallest * 2.5)  # a p99 far above the bars is cut off rather than squash them
    ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax.set_ylabel("p50 latency, ms (whisker: p99)")
    ax.set_title(f"{model}: latency at concurrency 1")
    ax.grid(axis="y", alpha=0.3)


def _throughput_lines(ax: Any, key: tuple[int, str], curves: dict[str, list[Point]], colours: dict[str, str]) -> None:
    batch, model = key
    for runtime, pts in curves.items():
        ax.plot([p.concurrency for p in pts], [p.per_second for p in pts], marker="o", ms=4, color=colours[runtime])
    concurrencies = sorted({p.concurrency for pts in curves.values() for p in pts})
    ax.set_xscale("log", base=2)
    ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("inferences / s")
    ax.set_title(f"{model}: throughput, batch {batch}")
    ax.grid(alpha=0.3)
