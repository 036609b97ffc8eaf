"""The ONNX path: load → freeze → optimize → ONNX export → (FP16 | INT8) → validate with ORT → (plan) → report.

``pipeline.convert_model`` sends a spec here when ``spec.uses_onnx`` says so
(``target.backend`` onnxruntime or tensorrt, or python with
``onnx.enabled``).  The first three stages are the TF-TRT path's own; then
the optimized frozen graph goes to ONNX, and ``tensorrt.precision`` decides
the artefact:

- FP32: the tf2onnx export as is.
- FP16: with TensorRT running the model (the plan, or the ORT backend's
  TensorRT accelerator) the ONNX stays FP32 and TensorRT builds FP16 layers
  (it keeps precision-sensitive layers in FP32 itself); otherwise the weights
  and arithmetic are converted to FP16 with FP32 inputs and outputs, so the
  Triton config does not change.
- INT8: explicit Q/DQ (``onnx_quantize``), layout chosen by the target.

The result is validated with ONNX Runtime on the CPU against the TensorFlow
original.  A TensorRT plan is built last, from the validated ONNX file.
"""

from __future__ import annotations

import gc
import json
import shutil
import time
from pathlib import Path
from typing import Any

from edgeopt.artifact import Artifact
from edgeopt.converter.stages import StageLog
from edgeopt.spec import OptimizedModel

ONNX_FILE = "model.onnx"
PLAN_FILE = "model.plan"
REPORT_FILE = "report.json"
SIGNATURE_FILE = "signature.json"


def _convert_precision(model: OptimizedModel, exported: Path, stage_dir: Path, log: StageLog) -> dict[str, Any]:
    from edgeopt.converter import onnx_export, onnx_quantize

    spec = model.spec
    precision = spec.tensorrt.precision
    final = stage_dir / ONNX_FILE
    if precision == "INT8":
        with log.stage("quantize") as rec:
            inputs, _ = onnx_export.onnx_signature_of(exported)
            details = onnx_quantize.quantize(exported, final, spec, inputs)
            rec.details.update(layout=details["layout"]["name"], method=details["method"])
        exported.unlink()
        return {"precision": "INT8", "int8": details, "precisionBy": "onnx"}
    if precision == "FP16" and not onnx_quantize.runs_on_tensorrt(spec):
        with log.stage("fp16") as rec:
            import onnx
            from onnxruntime.transformers.float16 import convert_float_to_float16

            half = convert_float_to_float16(onnx.load(str(exported)), keep_io_types=True)
            onnx.save_model(half, str(final))
            rec.details["fileBytes"] = final.stat().st_size
        exported.unlink()
        return {"precision": "FP16", "precisionBy": "onnx", "fileBytes": final.stat().st_size}
    exported.rename(final)
    by = "tensorrt" if precision != "FP32" else "onnx"
    return {"precision": precision, "precisionBy": by}


def run_onnx(model: OptimizedModel, stage_dir: Path, log: StageLog) -> Artifact:
    """Convert through ONNX into ``stage_dir``; the caller removes it on failure."""
    from edgeopt.converter import freeze, load, onnx_export, onnx_validate, optimize, report, validate
    from edgeopt.converter.graph_model import op_counts

    spec = model.spec
    t0 = time.monotonic()
    plan_backend = spec.target.backend == "tensorrt"
    if plan_backend:
        with log.stage("preflight") as rec:
            from edgeopt.converter import trt_build

            rec.details["tensorrt"] = trt_build.check_tensorrt()
    with log.stage("load") as rec:
        loaded = load.load_model(model)
        ops_loaded = op_counts(loaded.graph_def)
        loaded.graph_def = None
        rec.details["ops"] = ops_loaded["total"]
    try:
        with log.stage("freeze") as rec:
            frozen = freeze.freeze(loaded)
            ops_before = op_counts(frozen.graph_def)
            rec.details["ops"] = ops_before["total"]
        with log.stage("optimize") as rec:
            optimized, steps = optimize.optimize(frozen, spec.optimize.transforms)
            del frozen
            gc.collect()
            ops_after = op_counts(optimized.graph_def)
            rec.details["ops"] = ops_after["total"]
        exported = stage_dir / "model.fp32.onnx"
        with log.stage("onnx") as rec:
            onnx_details = onnx_export.export_onnx(optimized, exported, opset=spec.onnx.opset)
            rec.details.update(ops=onnx_details["ops"]["total"], fileBytes=onnx_details["fileBytes"])
        del optimized
        gc.collect()
        onnx_details.update(_convert_precision(model, exported, stage_dir, log))
        final = stage_dir / ONNX_FILE
        inputs, outputs = onnx_export.onnx_signature_of(final)
        with log.stage("validate") as rec:
            runner = onnx_validate.ort_runner(onnx_validate.ort_session(final))
            feeds, origin = validate.validation_inputs(spec, inputs)
            errors = onnx_validate.compare(
                loaded.reference(feeds), runner(feeds), spec.validation, int8=spec.tensorrt.precision == "INT8"
            )
            errors["inputs"] = origin
            latency = onnx_validate.latency(loaded.reference, runner, feeds)
            rec.details.update(maxAbsError=errors["maxAbsError"], maxRelError=errors["maxRelError"])
    finally:
        loaded.close()
    artefact = final
    plan: dict[str, Any] = {}
    if plan_backend:
        with log.stage("tensorrt-plan") as rec:
            from edgeopt.converter import trt_build

            artefact = stage_dir / PLAN_FILE
            plan = trt_build.build_plan(
                final,
                artefact,
                inputs=inputs,
                precision=spec.tensorrt.precision,
                max_batch_size=max(1, spec.target.max_batch_size),
                workspace_bytes=spec.tensorrt.max_workspace_size_bytes,
            )
            rec.details.update(planBytes=plan["planBytes"], tensorrt=plan["tensorrt"])
    else:
        log.skip("tensorrt-plan", f"target.backend is {spec.target.backend}")
    with log.stage("report"):
        sig = {"signature_key": "onnx", "inputs": [vars(t) for t in inputs], "outputs": [vars(t) for t in outputs]}
        full = report.build_report(
            model_name=model.model_name,
            source={"uri": spec.source.uri, "format": spec.source.format, "signature": spec.source.signature},
            stages=log.records,
            ops={"loaded": ops_loaded, "before": ops_before, "after": ops_after, "onnx": onnx_details["ops"]},
            transforms=steps,
            tensorrt={
                "enabled": spec.tensorrt.enabled,
                "applied": bool(plan),
                "engines": 1 if plan else 0,
                "precision": onnx_details["precision"],
                **({"plan": plan} if plan else {}),
            },
            validation=errors,
            latency=latency,
            env=report.environment(),
            signature=sig,
            seconds=time.monotonic() - t0,
        )
        full["onnx"] = onnx_details
        if plan:
            full["environment"].update(tensorrt=plan["tensorrt"], gpu=plan["gpu"] or full["environment"].get("gpu"))
    return _finish(model, stage_dir, artefact, full, log, t0, sig, inputs, outputs, feeds)


def _finish(
    model: OptimizedModel,
    stage_dir: Path,
    artefact: Path,
    full: dict[str, Any],
    log: StageLog,
    t0: float,
    sig: dict[str, Any],
    inputs: Any,
    outputs: Any,
    feeds: dict[str, Any],
) -> Artifact:
    from edgeopt.converter import report

    if artefact.name == PLAN_FILE:
        (stage_dir / ONNX_FILE).unlink(missing_ok=True)  # only the plan is published
    full["stages"] = [s.as_report() for s in log.records]
    full["conversionSeconds"] = round(time.monotonic() - t0, 3)
    full["summary"] = report.compact(full)
    (stage_dir / REPORT_FILE).write_text(json.dumps(full, indent=2, default=str))
    (stage_dir / SIGNATURE_FILE).write_text(json.dumps(sig, indent=2))
    for leftover in stage_dir.glob("*.onnx.data"):
        shutil.rmtree(leftover, ignore_errors=True)
    return Artifact(
        savedmodel_dir=artefact,
        signature_key="onnx",
        inputs=inputs,
        outputs=outputs,
        trt_applied=artefact.name == PLAN_FILE,
        precision=model.spec.tensorrt.precision,
        gpu=bool(full["environment"].get("gpu")),
        report=full,
        warmup_inputs={k: v[:1] for k, v in feeds.items()},
        model_format="plan" if artefact.name == PLAN_FILE else "onnx",
    )
