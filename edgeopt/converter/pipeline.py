"""The conversion pipeline: load → freeze → optimize → export → TF-TRT → validate → report.

Each stage is a module; this file only runs them in order, times them
(``stages.StageLog``) and assembles the Artifact.  Everything is written in
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
from pathlib import Path
from typing import Any

from edgeopt.artifact import OPTIMIZED_GRAPH_FILE, Artifact
from edgeopt.converter.feeds import batch_size as feeds_batch
from edgeopt.converter.feeds import first_sample
from edgeopt.converter.stages import ProgressCallback, StageLog
from edgeopt.errors import ConversionError, EdgeoptError
from edgeopt.limits import Limits, check_sample_counts
from edgeopt.spec import OptimizedModel, uses_onnx

SAVEDMODEL_DIR = "model.savedmodel"
REPORT_FILE = "report.json"
SIGNATURE_FILE = "signature.json"


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


def _run(model: OptimizedModel, stage_dir: Path, log: StageLog) -> Artifact:
    # Imported here: TensorFlow loads only when a conversion really runs.
    from edgeopt.converter import export, freeze, load, optimize, report, validate
    from edgeopt.converter.graph_model import op_counts

    spec = model.spec
    trt = spec.tensorrt
    t0 = time.monotonic()
    trt_details: dict[str, Any] = {"enabled": trt.enabled, "applied": False, "engines": 0, "precision": None}
    if trt.enabled:
        with log.stage("preflight") as rec:
            from edgeopt.converter import tftrt

            rec.details["tensorrt"] = tftrt.check_tensorrt()
    with log.stage("load") as rec:
        loaded = load.load_model(model)
        ops_loaded = op_counts(loaded.graph_def)
        loaded.graph_def = None  # only needed for the count; big models hold their weights in it
        rec.details["ops"] = ops_loaded["total"]
        if loaded.constants:
            rec.details["constants"] = loaded.constants
    try:
        with log.stage("freeze") as rec:
            frozen = freeze.freeze(loaded)
            ops_before = op_counts(frozen.graph_def)
            rec.details["ops"] = ops_before["total"]
        with log.stage("optimize") as rec:
            optimized, steps = optimize.optimize(frozen, spec.optimize.transforms)
            del frozen  # every GraphDef copy holds all the weights
            gc.collect()
            ops_after = op_counts(optimized.graph_def)
            rec.details["ops"] = ops_after["total"]
            (stage_dir / OPTIMIZED_GRAPH_FILE).write_bytes(optimized.graph_def.SerializeToString())
        exported = stage_dir / ("optimized.savedmodel" if trt.enabled else SAVEDMODEL_DIR)
        with log.stage("export"):
            export.export_saved_model(optimized, exported, jit_compile=spec.xla.jit)
            gc.collect()
        # The exported signature is built from these endpoints (validate re-reads the real one).
        inputs = [e.info() for e in optimized.inputs]
        final = stage_dir / SAVEDMODEL_DIR
        if trt.enabled:
            with log.stage("tftrt") as rec:
                from edgeopt.converter import tftrt

                trt_details.update(tftrt.convert(exported, final, trt, inputs, seed=spec.validation.seed))
                trt_details.update(applied=True, precision=trt.precision)
                rec.details["engines"] = trt_details["engines"]
            shutil.rmtree(exported, ignore_errors=True)
        else:
            log.skip("tftrt", "spec.tensorrt.enabled is false")
        with log.stage("validate") as rec:
            obj, inputs, outputs = export.read_signature(final)
            result = export.saved_model_runner(obj)
            feeds, origin = validate.validation_inputs(spec, inputs)
            if spec.xla.jit:
                from edgeopt.converter.xla import check_compiles

                check_compiles(result, feeds)
            errors = validate.compare(
                loaded.reference(feeds), result(feeds), rtol=spec.validation.rtol, atol=spec.validation.atol
            )
            errors.update(inputs=origin, rtol=spec.validation.rtol, atol=spec.validation.atol)
            latency: dict[str, Any] = {
                "before": validate.latency_ms(loaded.reference, feeds),
                "after": validate.latency_ms(result, feeds),
                "batch": feeds_batch(feeds) if feeds else 0,
                "runs": 10,
            }
            rec.details.update(maxAbsError=errors["maxAbsError"], maxRelError=errors["maxRelError"])
            if spec.xla.jit:
                from edgeopt.converter.xla import xla_report

                latency["xla"] = xla_report(optimized, final, result, feeds)
    finally:
        loaded.close()
    with log.stage("report"):
        sig = {
            "signature_key": export.SIGNATURE_KEY,
            "inputs": [vars(t) for t in inputs],
            "outputs": [vars(t) for t in outputs],
        }
        src = spec.source
        full = report.build_report(
            model_name=model.model_name,
            source={
                "uri": src.uri,
                "format": src.format,
                "graph": src.graph,
                "checkpoint": src.checkpoint,
                "signature": src.signature,
            },
            stages=log.records,
            ops={
                "loaded": ops_loaded,
                "before": ops_before,
                "after": ops_after,
                "note": (
                    "before = the frozen graph the transforms start from: as stored for FrozenGraph, "
                    "variables turned to constants and cut to what the outputs need for Checkpoint, the "
                    "inlined signature function for SavedModel/Keras; loaded = the graph as stored"
                ),
            },
            transforms=steps,
            tensorrt=trt_details,
            validation=errors,
            latency=latency,
            env=report.environment(),
            signature=sig,
            seconds=time.monotonic() - t0,
        )
    # The report stage's own record is complete only now.
    full["stages"] = [s.as_report() for s in log.records]
    full["conversionSeconds"] = round(time.monotonic() - t0, 3)
    full["summary"] = report.compact(full)
    (stage_dir / REPORT_FILE).write_text(json.dumps(full, indent=2, default=str))
    (stage_dir / SIGNATURE_FILE).write_text(json.dumps(sig, indent=2))
    return Artifact(
        savedmodel_dir=final,
        signature_key=export.SIGNATURE_KEY,
        inputs=inputs,
        outputs=outputs,
        trt_applied=bool(trt_details["applied"]),
        precision=trt.precision if trt_details["applied"] else None,
        gpu=bool(full["environment"].get("gpu")),
        report=full,
        warmup_inputs=first_sample(feeds),
    )
