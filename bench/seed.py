"""The seed guide's optional steps, measured on MobileNetV2 (random weights): 8-bit weights and XLA.

- ``quantize_weights``: the SavedModel's size with the default transforms
  plus quantize_weights, over the size with the default transforms alone
  (target ≤ 0.3×), and the max abs error of its outputs against the original
  model on the same inputs (reported, no target: random weights say nothing
  about accuracy).
- XLA: the ``xla.jit: true`` artefact's p50 latency over the same optimized
  graph without XLA, loaded side by side and called alternately, batch 1
  and 8 (target ≤ 1.0×: no slower).

Each block is a self-contained function returning its rows, so the table
layout stays the report module's business.  The model is this area's own
MobileNetV2: Keras's random initialisation (batch-norm statistics 0 and 1)
makes the stock one answer exactly 0.1 for every class, which would hide any
error; here the classifier returns logits and the batch norms get trained-
looking statistics, so an error shows.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

from bench import models
from bench.context import Context
from bench.report import AreaResult, Row, Target
from bench.stats import interleave
from bench.tfrun import load_runner

AREA = "seed"
BATCHES = (1, 8)


def _case(quick: bool) -> models.ModelCase:
    stock = next(c for c in models.cases(quick) if c.name == "mobilenetv2")
    return models.ModelCase("seed-mobilenetv2", "keras", "mobilenetv2", stock.input_size, stock.iterations)


def write_source(case: models.ModelCase, src: Path) -> None:
    """MobileNetV2 (weights=None, logits out) with seeded non-trivial batch-norm statistics, as a SavedModel."""
    if (src / ".done").exists():
        return
    import keras
    import numpy as np

    keras.utils.set_random_seed(3)
    model = keras.applications.MobileNetV2(
        input_shape=(case.input_size, case.input_size, 3), weights=None, classes=10, classifier_activation=None
    )
    rng = np.random.default_rng(5)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                    rng.normal(0, 0.1, beta.shape).astype("float32"),
                    rng.normal(0, 0.1, mean.shape).astype("float32"),
                    rng.uniform(0.5, 1.5, var.shape).astype("float32"),
                ]
            )
    model.export(str(src / "saved_model"), verbose=False)
    (src / ".done").touch()


def prepare(ctx: Context, quick: bool) -> models.Prepared:
    case = _case(quick)
    src = ctx.dir("models", case.label, "source")
    ctx.log(f"{case.label}: writing the source model (logits, non-trivial batch norms)")
    write_source(case, src)
    ctx.log(f"{case.label}: converting with the default transforms")
    out = convert_variant(ctx, case, src, "optimized")
    return models.Prepared(case, src, src / "saved_model", out, json.loads((out / "report.json").read_text()))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def convert_variant(ctx: Context, case: models.ModelCase, src: Path, name: str, **spec: Any) -> Path:
    """``edgeopt convert -f`` of the case with ``spec`` sections overridden; returns the artefact dir."""
    out = ctx.dir("models", case.label) / name
    doc = models.manifest(case, src, ctx.dir("repo"))
    doc["spec"].update(spec)
    models.convert_manifest(ctx, doc, out)
    return out


def quantize_weights_rows(ctx: Context, prep: models.Prepared) -> tuple[list[Row], dict[str, Any]]:
    import numpy as np

    from edgeopt.spec import DEFAULT_TRANSFORMS

    ctx.log(f"{prep.case.label}: converting with quantize_weights")
    transforms = [*DEFAULT_TRANSFORMS[:-2], "quantize_weights", *DEFAULT_TRANSFORMS[-2:]]
    # 8-bit weights move outputs by far more than float rounding: validate loosely, report the real error.
    out = convert_variant(
        ctx,
        prep.case,
        prep.source_dir,
        "quantized",
        optimize={"transforms": transforms},
        validation={"rtol": 1.0, "atol": 1.0},
    )
    quantized = dir_bytes(out / "model.savedmodel")
    plain = dir_bytes(prep.optimized)
    run_q, _, keep_q = load_runner(out / "model.savedmodel", 8)
    run_o, _, keep_o = load_runner(prep.original, 8)  # same seed: same inputs
    got, want = run_q(), run_o()
    error = max(float(np.abs(got[k] - want[k]).max()) for k in want)
    scale = max(float(np.abs(want[k]).max()) for k in want)
    del run_q, run_o, keep_q, keep_o
    gc.collect()
    report = json.loads((out / "report.json").read_text())
    step = next((s for s in report.get("transforms") or [] if s["transform"] == "quantize_weights"), {})
    details = {
        "bytesQuantized": quantized,
        "bytesDefault": plain,
        "maxAbsError": error,
        "maxAbsLogit": scale,
        "step": step,
    }
    rows = [
        Row(
            AREA,
            f"{prep.case.label} quantize_weights SavedModel size",
            quantized / 2**20,
            plain / 2**20,
            "MiB",
            Target(0.3),
            "default transforms",
            note="default transforms + quantize_weights",
        ),
        Row(
            AREA,
            f"{prep.case.label} quantize_weights max abs logit error",
            error,
            None,
            "",
            note=f"vs the original on batch 8; logits up to {scale:.3g}; "
            f"max weight error {step.get('maxWeightError', float('nan')):.3g}",
        ),
    ]
    return rows, details


def xla_rows(ctx: Context, prep: models.Prepared) -> tuple[list[Row], dict[str, Any]]:
    ctx.log(f"{prep.case.label}: converting with xla.jit")
    out = convert_variant(ctx, prep.case, prep.source_dir, "xla", xla={"jit": True})
    rows: list[Row] = []
    details: dict[str, Any] = {"report": json.loads((out / "report.json").read_text()).get("latencyMs", {}).get("xla")}
    for batch in BATCHES:
        xla, _, keep_x = load_runner(out / "model.savedmodel", batch)
        plain, _, keep_p = load_runner(prep.optimized, batch)
        samples = interleave({"xla": xla, "plain": plain}, prep.case.iterations, warmup=5)
        summary = {k: v.summary() for k, v in samples.items()}
        details[f"batch{batch}"] = summary
        ctx.log(f"{prep.case.label} b{batch}: xla {summary['xla']}, without {summary['plain']}")
        rows.append(
            Row(
                AREA,
                f"{prep.case.label} XLA p50 latency, batch {batch}",
                float(summary["xla"]["p50"]),
                float(summary["plain"]["p50"]),
                "ms",
                Target(1.0),
                "same graph without XLA",
            )
        )
        del xla, plain, keep_x, keep_p, samples
        gc.collect()
    return rows, details


def run(ctx: Context) -> AreaResult:
    result = AreaResult(AREA)
    prep = prepare(ctx, ctx.quick)
    for name, block in (("quantizeWeights", quantize_weights_rows), ("xla", xla_rows)):
        rows, details = block(ctx, prep)
        result.rows.extend(rows)
        result.details[name] = details
    return result
