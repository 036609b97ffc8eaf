"""The conversion pipeline: load → freeze → optimize → export → TF-TRT → validate → report.

Each stage is a module; this file only runs them in order, times them
(``stages.StageLog``) and assembles the Artifact.  load → freeze → optimize
are the front stages the ONNX path shares (``front``).  Everything is written in
a fresh directory inside ``workdir``; on any failure that directory is
removed, so a failed conversion never leaves a half-written model behind.
On success the caller owns the directory (``artifact.savedmodel_dir.parent``)
and removes it after publishing.
"""

from __future__ import annotations

import gc
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeopt.artifact import OPTIMIZED_GRAPH_FILE, Artifact, TensorInfo
from edgeopt.converter.feeds import batch_size as feeds_batch
from edgeopt.converter.feeds import first_sample
from edgeopt.converter.front import Front
from edgeopt.converter.stages import ProgressCallback, StageLog
from edgeopt.errors import ConversionError, EdgeoptError
from edgeopt.limits import Limits, check_sample_counts
from edgeopt.spec import OptimizedModel, precision_of, uses_onnx

SAVEDMODEL_DIR = "model.savedmodel"
REPORT_FILE = "report.json"
SIGNATURE_FILE = "signature.json"
OPS_NOTE = (
    "before = the frozen graph the transforms start from: as stored for FrozenGraph, variables turned to "
    "constants and cut to what the outputs need for Checkpoint, the inlined signature function for "
    "SavedModel/Keras; loaded = the graph as stored"
)


def convert_model(model: OptimizedModel, workdir: Path, *, on_event: ProgressCallback | None = None) -> Artifact:
    """Convert the model the spec describes; raise an EdgeoptError (and leave nothing) on failure."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cal = model.spec.tensorrt.calibration
    check_sample_counts(model.spec.validation.samples, cal.samples if cal else None, Limits.from_env())
    stage_dir = Path(tempfile.mkdtemp(prefix=f".convert-{model.model_name}-", dir=workdir))
    log = StageLog(on_event)
    try:
        if uses_onnx(model.spec):
            # The TF → ONNX path (target.backend onnxruntime / tensorrt, or python + onnx.enabled).
            from edgeopt.converter.onnx_pipeline import run_onnx

            return run_onnx(model, stage_dir, log)
        return _run(model, stage_dir, log)
    except EdgeoptError:
        shutil.rmtree(stage_dir, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(stage_dir, ignore_errors=True)
        stage = log.records[-1].name if log.records else "start"
        raise ConversionError(f"stage {stage} failed unexpectedly: {type(exc).__name__}: {exc}") from exc
    except BaseException:
        shutil.rmtree(stage_dir, ignore_errors=True)
        raise


@dataclass
class _Run:
    """What the stages of one SavedModel conversion found, for the report and the Artifact."""

    front: Front
    t0: float = field(default_factory=time.monotonic)
    trt: dict[str, Any] = field(default_factory=dict)
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    errors: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    feeds: dict[str, Any] = field(default_factory=dict)


def _run(model: OptimizedModel, stage_dir: Path, log: StageLog) -> Artifact:
    # Imported here: TensorFlow loads only when a conversion really runs.
    from edgeopt.converter import front

    spec = model.spec
    run = _Run(Front())
    run.trt = {"enabled": spec.tensorrt.enabled, "applied": False, "engines": 0, "precision": None}
    if spec.tensorrt.enabled:
        with log.stage("preflight") as rec:
            from edgeopt.converter import tftrt

            rec.details["tensorrt"] = tftrt.check_tensorrt()
    loaded = front.load(model, log, run.front)
    try:
        optimized = front.freeze_optimize(
            loaded, spec.optimize.transforms, log, run.front, for_onnx=False, keep=stage_dir / OPTIMIZED_GRAPH_FILE
        )
        final = _export(model, optimized, stage_dir, log, run)
        _validate(model, loaded, optimized, final, log, run)
    finally:
        loaded.close()
    with log.stage("report"):
        full = _report(model, log, run)
    return _finish(model, stage_dir, final, full, log, run)


def _export(model: OptimizedModel, optimized: Any, stage_dir: Path, log: StageLog, run: _Run) -> Path:
    """The SavedModel (XLA-compiled if asked), then TF-TRT when enabled; the path of the one published."""
    from edgeopt.converter import export

    trt = model.spec.tensorrt
    exported = stage_dir / ("optimized.savedmodel" if trt.enabled else SAVEDMODEL_DIR)
    with log.stage("export"):
        export.export_saved_model(optimized, exported, jit_compile=model.spec.xla.jit)
        gc.collect()
    final = stage_dir / SAVEDMODEL_DIR
    if not trt.enabled:
        log.skip("tftrt", "spec.tensorrt.enabled is false")
        return final
    with log.stage("tftrt") as rec:
        from edgeopt.converter import tftrt

        # The exported signature is built from these endpoints (validate re-reads the real one).
        inputs = [e.info() for e in optimized.inputs]
        run.trt.update(tftrt.convert(exported, final, trt, inputs, seed=model.spec.validation.seed))
        run.trt.update(applied=True, precision=trt.precision)
        rec.details["engines"] = run.trt["engines"]
    shutil.rmtree(exported, ignore_errors=True)
    return final


def _validate(model: OptimizedModel, loaded: Any, optimized: Any, final: Path, log: StageLog, run: _Run) -> None:
    """The published SavedModel against the original on the validation inputs, and both latencies."""
    from edgeopt.converter import export, validate

    spec = model.spec
    with log.stage("validate") as rec:
        obj, run.inputs, run.outputs = export.read_signature(final)
        result = export.saved_model_runner(obj)
        run.feeds, origin = validate.validation_inputs(spec, run.inputs)
        if spec.xla.jit:
            from edgeopt.converter.xla import check_compiles

            check_compiles(result, run.feeds)
        v = spec.validation
        run.errors = validate.compare(loaded.reference(run.feeds), result(run.feeds), rtol=v.rtol, atol=v.atol)
        run.errors.update(inputs=origin, rtol=v.rtol, atol=v.atol)
        run.latency = {
            "before": validate.latency_ms(loaded.reference, run.feeds),
            "after": validate.latency_ms(result, run.feeds),
            "batch": feeds_batch(run.feeds) if run.feeds else 0,
            "runs": 10,
        }
        rec.details.update(maxAbsError=run.errors["maxAbsError"], maxRelError=run.errors["maxRelError"])
        if spec.xla.jit:
            from edgeopt.converter.xla import xla_report

            run.latency["xla"] = xla_report(optimized, final, result, run.feeds)


def _signature(run: _Run) -> dict[str, Any]:
    from edgeopt.converter.export import SIGNATURE_KEY

    return {
        "signature_key": SIGNATURE_KEY,
        "inputs": [vars(t) for t in run.inputs],
        "outputs": [vars(t) for t in run.outputs],
    }


def _report(model: OptimizedModel, log: StageLog, run: _Run) -> dict[str, Any]:
    from edgeopt.converter import report

    src = model.spec.source
    return report.build_report(
        model_name=model.model_name,
        source={
            "uri": src.uri,
            "format": src.format,
            "graph": src.graph,
            "checkpoint": src.checkpoint,
            "signature": src.signature,
        },
        stages=log.records,
        ops={**run.front.ops, "note": OPS_NOTE},
        transforms=run.front.steps,
        tensorrt=run.trt,
        validation=run.errors,
        latency=run.latency,
        env=report.environment(),
        signature=_signature(run),
        seconds=time.monotonic() - run.t0,
    )


def _finish(
    model: OptimizedModel, stage_dir: Path, final: Path, full: dict[str, Any], log: StageLog, run: _Run
) -> Artifact:
    from edgeopt.converter import report
    from edgeopt.converter.export import SIGNATURE_KEY

    # The report stage's own record is complete only now.
    full["stages"] = [s.as_report() for s in log.records]
    full["conversionSeconds"] = round(time.monotonic() - run.t0, 3)
    full["summary"] = report.compact(full)
    (stage_dir / REPORT_FILE).write_text(json.dumps(full, indent=2, default=str))
    (stage_dir / SIGNATURE_FILE).write_text(json.dumps(_signature(run), indent=2))
    return Artifact(
        savedmodel_dir=final,
        signature_key=SIGNATURE_KEY,
        inputs=run.inputs,
        outputs=run.outputs,
        trt_applied=bool(run.trt["applied"]),
        precision=precision_of(model.spec) if run.trt["applied"] else None,
        gpu=bool(full["environment"].get("gpu")),
        report=full,
        warmup_inputs=first_sample(run.feeds),
    )
