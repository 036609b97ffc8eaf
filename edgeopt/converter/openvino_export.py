"""ONNX path → OpenVINO IR: ``target.backend: openvino`` (or python with ``openvino.enabled``).

After the ONNX export (FP32, the other stages' own), the graph goes to
OpenVINO with ``openvino.convert_model`` and ``tensorrt.precision`` decides
the IR:

- FP32: f32 weights; OpenVINO picks the inference precision at run time
  (``spec.openvino.inferencePrecision: auto``: bf16 on CPUs with AVX512-BF16
  or AMX, f32 elsewhere; ``f32`` forces true FP32).
- FP16: the same, with weights stored in FP16 (half the file).
- INT8: NNCF post-training quantization from the spec's calibration data (the
  same ``tensorrt.calibration`` block as every INT8 path).

The IR is then validated against the TensorFlow original with the same
runner Triton's python flavour uses (``templates/_edgeopt_openvino.py``):
anything but f32 arithmetic (INT8, or bf16 where the CPU chose it) is gated
by the INT8 tolerances and top-1 agreement (``validation.int8Rtol/int8Atol/
minTop1Agreement``); the report says which precision the converter's CPU ran.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from edgeopt.converter.stages import StageLog
from edgeopt.errors import ConversionError
from edgeopt.spec import OptimizedModel, precision_of

XML_FILE = "model.xml"
BIN_FILE = "model.bin"
#: The module Triton's python flavour imports to run the IR (package data, published beside model.py).
RUNNER_MODULE = "_edgeopt_openvino"


def runner_module() -> ModuleType:
    """``templates/_edgeopt_openvino.py``, imported from the package data (one source with Triton's copy)."""
    if RUNNER_MODULE in sys.modules:
        return sys.modules[RUNNER_MODULE]
    path = resources.files("edgeopt.triton").joinpath("templates", f"{RUNNER_MODULE}.py")
    spec = importlib.util.spec_from_file_location(RUNNER_MODULE, str(path))
    if spec is None or spec.loader is None:
        raise ConversionError(f"cannot load {path}: the edgeopt package is incomplete")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[RUNNER_MODULE] = module
    return module


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise ConversionError(
            f"target.backend openvino needs the openvino package in the converter ({exc}); use the converter "
            "image, or pip install the converter extra"
        ) from exc
    return openvino


def quantize(ov_model: Any, batches: list[dict[str, Any]]) -> Any:
    """NNCF post-training INT8 (symmetric weights and activations, CPU defaults) from calibration feeds."""
    try:
        import nncf
    except ImportError as exc:
        raise ConversionError(f"INT8 for OpenVINO needs the nncf package in the converter ({exc})") from exc
    try:
        return nncf.quantize(ov_model, nncf.Dataset(batches), subset_size=max(1, len(batches)))
    except Exception as exc:  # NNCF raises its own types
        first = str(exc).splitlines()[0][:400] if str(exc) else type(exc).__name__
        raise ConversionError(f"INT8 quantization with NNCF failed: {first}") from exc


def export(model: OptimizedModel, onnx_file: Path, stage_dir: Path, log: StageLog, inputs: list[Any]) -> dict[str, Any]:
    """model.onnx → model.xml/model.bin in ``stage_dir`` (the ONNX file is removed); the report's details."""
    from edgeopt.converter import onnx_quantize

    ov = _openvino()
    spec = model.spec
    precision = precision_of(spec)
    with log.stage("openvino") as rec:
        try:
            ov_model = ov.convert_model(str(onnx_file))
        except Exception as exc:
            first = str(exc).splitlines()[0][:400] if str(exc) else type(exc).__name__
            raise ConversionError(f"OpenVINO cannot convert the ONNX export: {first}") from exc
        rec.details["ops"] = len(ov_model.get_ordered_ops())
    details: dict[str, Any] = {"openvino": ov.__version__.split("-")[0], "precision": precision}
    if precision == "INT8":
        with log.stage("quantize") as rec:
            batches, calibration = onnx_quantize.calibration_data(spec, inputs)
            ov_model = quantize(ov_model, batches)
            details["int8"] = {"method": "nncf", "calibration": calibration}
            rec.details.update(method="nncf", samples=calibration["samples"])
    xml = stage_dir / XML_FILE
    ov.save_model(ov_model, str(xml), compress_to_fp16=precision == "FP16")
    onnx_file.unlink()
    details["fileBytes"] = xml.stat().st_size + (stage_dir / BIN_FILE).stat().st_size
    return details


def validate(model: OptimizedModel, loaded: Any, xml: Path, log: StageLog, run: Any) -> None:
    """The IR, run as Triton's python flavour runs it, against the TensorFlow original (and both latencies)."""
    from edgeopt.converter import onnx_validate, validate

    spec = model.spec
    with log.stage("validate") as rec:
        runner = runner_module().Runner(str(xml), precision=spec.openvino.inference_precision)
        runtime = runner.runtime_precision()
        reduced = precision_of(spec) == "INT8" or runtime != "f32"
        run.feeds, origin = validate.validation_inputs(spec, run.inputs)
        run.errors = onnx_validate.compare(
            loaded.reference(run.feeds), runner.run(run.feeds), spec.validation, int8=reduced
        )
        run.errors["inputs"] = origin
        run.latency = onnx_validate.latency(loaded.reference, runner.run, run.feeds)
        run.latency["afterRuntime"] = f"openvino-cpu ({runtime})"
        run.onnx["openvino"].update(
            inferencePrecision=spec.openvino.inference_precision,
            runtimePrecision=runtime,
            runtimeNote="the precision OpenVINO computed in on the converter's CPU; the serving CPU decides its own",
            gatedAs="reduced precision (int8Rtol/int8Atol/minTop1Agreement)" if reduced else "FP32 (rtol/atol)",
        )
        rec.details.update(maxAbsError=run.errors["maxAbsError"], runtimePrecision=runtime)


def export_and_validate(model: OptimizedModel, loaded: Any, stage_dir: Path, log: StageLog, run: Any) -> Path:
    """The ONNX pipeline's hook: model.onnx (FP32) in ``stage_dir`` → validated model.xml; returns its path."""
    from edgeopt.converter.onnx_pipeline import ONNX_FILE

    run.onnx["openvino"] = export(model, stage_dir / ONNX_FILE, stage_dir, log, run.inputs)
    run.onnx["precision"] = precision_of(model.spec)
    xml = stage_dir / XML_FILE
    validate(model, loaded, xml, log, run)
    return xml
