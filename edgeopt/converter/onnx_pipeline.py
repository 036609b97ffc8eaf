"""The ONNX path: load → freeze → optimize → ONNX export → (FP16 | INT8) → validate with ORT → (plan) → report.

``pipeline.convert_model`` sends a spec here when ``spec.uses_onnx`` says so
(``target.backend`` onnxruntime or tensorrt, or python with
``onnx.enabled``).  The first three stages are the TF-TRT path's own (``front``); then
the optimized frozen graph goes to ONNX, and ``tensorrt.precision`` decides
the artefact:

- FP32: the tf2onnx export as is.
- FP16: the weights and arithmetic are FP16 in the graph (``onnx_fp16``),
  whoever runs it (CUDA EP, ORT's TensorRT accelerator, a strongly typed
  plan), with the sensitive ops in FP32 and the inputs and outputs in the
  spec's dtypes, so the Triton config does not change.
- INT8: explicit Q/DQ (``onnx_quantize``), layout chosen by the target.

The result is validated with ONNX Runtime on the CPU against the TensorFlow
original.  ORT's TensorRT accelerator builds its engines in the Job when the
spec asks (``ort_trt_engines``); a TensorRT plan is built last, from the
validated ONNX file.
"""

from __future__ import annotations

import gc
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeopt.artifact import Artifact, TensorInfo
from edgeopt.converter.front import Front
from edgeopt.converter.stages import StageLog
from edgeopt.spec import OptimizedModel, onnx_device, precision_of, uses_openvino

ONNX_FILE = "model.onnx"
PLAN_FILE = "model.plan"
REPORT_FILE = "report.json"
SIGNATURE_FILE = "signature.json"


def _convert_precision(
    model: OptimizedModel, exported: Path, stage_dir: Path, log: StageLog, use_of: Any = None
) -> dict[str, Any]:
    from edgeopt.converter import onnx_export, onnx_quantize

    spec = model.spec
    precision = precision_of(spec)
    final = stage_dir / ONNX_FILE
    if uses_openvino(spec):  # OpenVINO applies the precision to its IR (openvino_export)
        exported.rename(final)
        return {"precision": "FP32", "precisionBy": "openvino"}
    if precision == "INT8":
        with log.stage("quantize") as rec:
            inputs, _ = onnx_export.onnx_signature_of(exported)
            details = onnx_quantize.quantize(exported, final, spec, inputs)
            rec.details.update(
                layout=details["layout"]["name"], method=details["method"], floatNodes=len(details["floatNodes"])
            )
        exported.unlink()
        return {"precision": "INT8", "int8": details, "precisionBy": "onnx"}
    if precision == "FP16":
        return _fp16(spec, exported, final, log, use_of)
    exported.rename(final)
    return {"precision": precision, "precisionBy": "onnx"}


def _fp16(spec: Any, exported: Path, final: Path, log: StageLog, use_of: Any) -> dict[str, Any]:
    from edgeopt.converter import onnx_fp16

    with log.stage("fp16") as rec:
        details = onnx_fp16.to_fp16(exported, final, use_of)
        rec.details.update(
            nodes=details["nodes"], fp32Prefix=details["fp32Prefix"]["computeNodes"], fileBytes=details["fileBytes"]
        )
    exported.unlink()
    fp16: dict[str, Any] = {"precision": "FP16", "precisionBy": "onnx", "fp16": details}
    fp16["fileBytes"] = details["fileBytes"]
    if onnx_device(spec) == "CPU":
        fp16["note"] = (
            "FP16 on device CPU halves the file, but ONNX Runtime's CPU kernels compute most ops in FP32 "
            "through casts (MobileNetV2 ran 1.5x slower than FP32 here); prefer FP32 or INT8 on CPU"
        )
    return fp16


@dataclass
class _Run:
    """What the stages of one ONNX conversion found, for the report and the Artifact."""

    t0: float = field(default_factory=time.monotonic)
    front: Front = field(default_factory=Front)
    onnx: dict[str, Any] = field(default_factory=dict)
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    errors: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    feeds: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    origin: str = ""
    fp16_check: Any = None
    plan: dict[str, Any] = field(default_factory=dict)
    engines: dict[str, Any] = field(default_factory=dict)


def run_onnx(model: OptimizedModel, stage_dir: Path, log: StageLog) -> Artifact:
    """Convert through ONNX into ``stage_dir``; the caller removes it on failure."""
    from edgeopt.converter import front

    spec = model.spec
    run = _Run()
    if spec.target.backend == "tensorrt":
        with log.stage("preflight") as rec:
            from edgeopt.converter import trt_build

            rec.details["tensorrt"] = trt_build.check_tensorrt()
    loaded = front.load(model, log, run.front)
    artefact = stage_dir / ONNX_FILE
    try:
        _export(model, loaded, stage_dir, log, run)
        if uses_openvino(spec):  # model.onnx → OpenVINO IR, validated as Triton runs it
            from edgeopt.converter.openvino_export import export_and_validate

            artefact = export_and_validate(model, loaded, stage_dir, log, run)
        else:
            _validate(model, loaded, artefact, log, run)
    finally:
        loaded.close()
    _prebuild_engines(model, stage_dir, log, run)
    if spec.target.backend == "tensorrt":
        artefact = _build_plan(model, stage_dir, log, run)
    else:
        log.skip("tensorrt-plan", f"target.backend is {spec.target.backend}")
    with log.stage("report"):
        full = _report(model, log, run)
    return _finish(model, stage_dir, artefact, full, log, run)


def _export(model: OptimizedModel, loaded: Any, stage_dir: Path, log: StageLog, run: _Run) -> None:
    """freeze → optimize (the front stages both paths share) → tf2onnx → the precision's ONNX artefact."""
    from edgeopt.converter import front, onnx_export

    optimized = front.freeze_optimize(loaded, model.spec.optimize.transforms, log, run.front, for_onnx=True)
    exported = stage_dir / "model.fp32.onnx"
    with log.stage("onnx") as rec:
        run.onnx = onnx_export.export_onnx(optimized, exported, opset=model.spec.onnx.opset)
        rec.details.update(ops=run.onnx["ops"]["total"], fileBytes=run.onnx["fileBytes"])
    del optimized
    gc.collect()
    fp16 = precision_of(model.spec) == "FP16" and not uses_openvino(model.spec)
    use_of = _fp16_use_of(model, loaded, exported, run) if fp16 else None
    run.onnx.update(_convert_precision(model, exported, stage_dir, log, use_of))
    run.front.ops["onnx"] = run.onnx.get("int8", {}).get("ops", run.onnx["ops"])
    run.inputs, run.outputs = onnx_export.onnx_signature_of(stage_dir / ONNX_FILE)


def _reference(model: OptimizedModel, loaded: Any, inputs: list[TensorInfo], run: _Run) -> None:
    """The validation inputs and TensorFlow's answers to them, once per conversion."""
    from edgeopt.converter import validate

    if not run.reference:
        run.feeds, run.origin = validate.validation_inputs(model.spec, inputs)
        run.reference = loaded.reference(run.feeds)


def _fp16_use_of(model: OptimizedModel, loaded: Any, exported: Path, run: _Run) -> Any:
    """How much of the FP16 tolerance a candidate FP16 graph uses against TensorFlow, as a GPU runs it."""
    from edgeopt.converter import onnx_export, onnx_validate

    _reference(model, loaded, onnx_export.onnx_signature_of(exported)[0], run)
    run.fp16_check = onnx_validate.GpuFp16Check(run.reference, run.feeds, model.spec.validation)
    return run.fp16_check


def _validate(model: OptimizedModel, loaded: Any, path: Path, log: StageLog, run: _Run) -> None:
    """ONNX Runtime vs the TensorFlow original on the validation inputs, and both latencies."""
    from edgeopt.converter import onnx_quantize, onnx_validate

    spec = model.spec
    with log.stage("validate") as rec:
        runner = onnx_validate.ort_runner(onnx_validate.ort_session(path))
        _reference(model, loaded, run.inputs, run)
        int8 = run.onnx.get("int8")
        remedy = {"remedy": onnx_quantize.remedy(int8)} if int8 else {}
        run.errors = onnx_validate.compare(
            run.reference,
            runner(run.feeds),
            spec.validation,
            int8=bool(int8),
            precision=precision_of(spec),
            **remedy,
        )
        if run.fp16_check is not None and run.fp16_check.last is not None:  # the written graph, emulated
            emulated, why = run.fp16_check.last
            prefix = run.onnx["fp16"]["fp32Prefix"]
            run.errors["gpuEmulation"] = onnx_validate.compare_on_gpu_emulation(
                run.reference, emulated, spec.validation, prefix
            )
            if why:
                run.errors["gpuEmulation"]["note"] = why
        run.errors["inputs"] = run.origin
        run.latency = onnx_validate.latency(loaded.reference, runner, run.feeds)
        rec.details.update(maxAbsError=run.errors["maxAbsError"], maxRelError=run.errors["maxRelError"])


def _prebuild_engines(model: OptimizedModel, stage_dir: Path, log: StageLog, run: _Run) -> None:
    """ORT's TensorRT accelerator builds the engines in the Job when the spec asks (``ort_trt_engines``)."""
    spec = model.spec
    if spec.target.backend != "onnxruntime" or onnx_device(spec) != "GPU" or not spec.tensorrt.enabled:
        return
    from edgeopt.converter import ort_trt_engines
    from edgeopt.triton.config import triton_max_batch, trt_accelerator_params

    why = None if spec.tensorrt.build_engines else "tensorrt.buildEngines is false: Triton builds them at first load"
    why = why or ort_trt_engines.unavailable()
    if why:
        log.skip("tensorrt-engines", why)
        return
    top = triton_max_batch(spec.target.max_batch_size, [*run.inputs, *run.outputs])
    with log.stage("tensorrt-engines") as rec:
        params = trt_accelerator_params(model, run.inputs, top)
        run.engines = ort_trt_engines.build(stage_dir / ONNX_FILE, stage_dir / "trt-scratch", params, run.inputs, top)
        rec.details.update(engines=run.engines["engines"], seconds=run.engines["seconds"])


def _build_plan(model: OptimizedModel, stage_dir: Path, log: StageLog, run: _Run) -> Path:
    from edgeopt.converter import trt_build

    spec = model.spec
    plan = stage_dir / PLAN_FILE
    with log.stage("tensorrt-plan") as rec:
        run.plan = trt_build.build_plan(
            stage_dir / ONNX_FILE,
            plan,
            inputs=run.inputs,
            precision=precision_of(spec),
            max_batch_size=max(1, spec.target.max_batch_size),
            workspace_bytes=spec.tensorrt.max_workspace_size_bytes,
            version_compatible=spec.tensorrt.version_compatible,
            hardware_compatibility=spec.tensorrt.hardware_compatibility,
        )
        rec.details.update(planBytes=run.plan["planBytes"], tensorrt=run.plan["tensorrt"], flags=run.plan["flags"])
    return plan


def _signature(run: _Run) -> dict[str, Any]:
    return {"signature_key": "onnx", "inputs": [vars(t) for t in run.inputs], "outputs": [vars(t) for t in run.outputs]}


def _report(model: OptimizedModel, log: StageLog, run: _Run) -> dict[str, Any]:
    from edgeopt.converter import report

    spec = model.spec
    full = report.build_report(
        model_name=model.model_name,
        source={"uri": spec.source.uri, "format": spec.source.format, "signature": spec.source.signature},
        stages=log.records,
        ops={**run.front.ops, "note": "onnx = the published ONNX graph (after INT8 quantization when INT8)"},
        transforms=run.front.steps,
        tensorrt={
            "enabled": spec.tensorrt.enabled,
            "applied": bool(run.plan),
            "engines": 1 if run.plan else 0,
            "precision": run.onnx["precision"],
            **({"plan": run.plan} if run.plan else {}),
        },
        validation=run.errors,
        latency=run.latency,
        env=report.environment(),
        signature=_signature(run),
        seconds=time.monotonic() - run.t0,
    )
    full["onnx"] = {**run.onnx, **({"tensorrtEngines": run.engines} if run.engines else {})}
    if run.plan:  # the plan's TensorRT and GPU, not TensorFlow's (which has no TensorRT on this path)
        full["environment"].update(tensorrt=run.plan["tensorrt"], gpu=run.plan["gpu"] or full["environment"]["gpu"])
    return full


def _finish(
    model: OptimizedModel, stage_dir: Path, artefact: Path, full: dict[str, Any], log: StageLog, run: _Run
) -> Artifact:
    from edgeopt.converter import report

    is_plan = artefact.name == PLAN_FILE
    model_format = "plan" if is_plan else "openvino" if artefact.suffix == ".xml" else "onnx"
    if is_plan:
        (stage_dir / ONNX_FILE).unlink(missing_ok=True)  # only the plan is published
    # The report stage's own record is complete only now.
    full["stages"] = [s.as_report() for s in log.records]
    full["conversionSeconds"] = round(time.monotonic() - run.t0, 3)
    full["summary"] = report.compact(full)
    (stage_dir / REPORT_FILE).write_text(json.dumps(full, indent=2, default=str))
    (stage_dir / SIGNATURE_FILE).write_text(json.dumps(_signature(run), indent=2))
    return Artifact(
        savedmodel_dir=artefact,
        signature_key="onnx",
        inputs=run.inputs,
        outputs=run.outputs,
        trt_applied=is_plan,
        precision=precision_of(model.spec),
        gpu=bool(full["environment"].get("gpu")),
        report=full,
        warmup_inputs={k: v[:1] for k, v in run.feeds.items()},
        model_format=model_format,
    )
