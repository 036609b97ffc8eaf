"""ONNX stage — validate: ONNX Runtime must answer like the TensorFlow original.

The comparison itself is ``validate.compare`` (max abs/rel error, NaN/Inf,
the worst element named).  INT8 gets its own tolerances
(``validation.int8Rtol/int8Atol``), and so does FP16 (``validation.fp16Rtol/fp16Atol``:
FP16's 10-bit mantissa over tens of layers), and INT8, for outputs shaped like class scores
(``[batch, classes]``, floats), top-1 agreement: quantization may move every
score a little, but a model that still picks the same class is the one users
want; below ``validation.minTop1Agreement`` the version is not published.

Neither gate can tell a collapsed output from a good one: an all-zero
softmax sits within ``int8Atol`` of small probabilities, and a regression
output has no top-1.  So every float output must also follow the original:
each sample that is not equal within ``rtol``/``atol`` must correlate
(Pearson, per sample) at least ``validation.minCorrelation`` with it, which
a constant output never does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.converter import validate
from edgeopt.converter.graph_model import ModelFn
from edgeopt.errors import ConversionError, InputError, ValidationError
from edgeopt.spec import Validation


def ort_session(path: Path, *, threads: int = 0) -> Any:
    """A CPU ONNX Runtime session (what validation and the bench compare; the GPU EPs are Triton's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
        first = str(exc).splitlines()[0][:400]
        raise ConversionError(f"ONNX Runtime cannot load {path.name}: {first}") from exc


def gpu_emulation_runner(half: Any) -> tuple[ModelFn, str | None]:
    """A CPU runner of ``half`` as a GPU computes it (``onnx_fp16.storage_emulation``), and why not if not.

    A graph the emulation cannot express (ORT refuses it, or it is over protobuf's 2 GiB) runs as it is,
    with the reason returned: the FP16 gate then sees the CPU's numbers, as it did before the emulation.
    """
    import onnxruntime as ort

    from edgeopt.converter import onnx_fp16

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        emulated = onnx_fp16.storage_emulation(half).SerializeToString()
        session = ort.InferenceSession(emulated, options, providers=["CPUExecutionProvider"])
        return ort_runner(session), None
    except Exception as exc:  # ORT's own error types; ValueError from protobuf over 2 GiB
        why = f"GPU emulation unavailable ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})"
    try:
        session = ort.InferenceSession(half.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise ConversionError(f"ONNX Runtime cannot load the FP16 graph: {first}") from exc
    return ort_runner(session), why


class GpuFp16Check:
    """How much of the FP16 tolerance a candidate FP16 graph uses against ``reference``, as a GPU computes it.

    ``onnx_fp16.to_fp16`` calls it per candidate; ``last`` keeps the emulated outputs (and why the plain
    CPU run stood in, if it did) of the latest call, which is the graph it wrote.
    """

    def __init__(self, reference: dict[str, np.ndarray], feeds: dict[str, np.ndarray], validation: Validation):
        self.reference, self.feeds, self.validation = reference, feeds, validation
        self.last: tuple[dict[str, np.ndarray], str | None] | None = None

    def __call__(self, half: Any) -> float:
        runner, why = gpu_emulation_runner(half)
        self.last = (runner(self.feeds), why)
        v = self.validation
        return validate.tolerance_use(self.reference, self.last[0], rtol=v.fp16_rtol, atol=v.fp16_atol)


def ort_runner(session: Any) -> ModelFn:
    names = [o.name for o in session.get_outputs()]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = session.run(names, feeds)
        except Exception as exc:
            raise InputError(f"ONNX Runtime rejected the inputs: {str(exc).splitlines()[0][:300]}") from exc
        return dict(zip(names, values, strict=True))

    return run


def looks_like_class_scores(ref: np.ndarray) -> bool:
    return ref.dtype.kind == "f" and ref.ndim == 2 and ref.shape[1] >= 2


def top1_agreement(reference: dict[str, np.ndarray], result: dict[str, np.ndarray]) -> dict[str, float]:
    """Per class-score output: the share of samples whose argmax matches the original's."""
    out = {}
    for key, ref in reference.items():
        ref = np.asarray(ref)
        if key in result and looks_like_class_scores(ref) and np.shape(result[key]) == ref.shape:
            out[key] = float(np.mean(np.argmax(ref, axis=1) == np.argmax(np.asarray(result[key]), axis=1)))
    return out


def correlations(
    reference: dict[str, np.ndarray], result: dict[str, np.ndarray], validation: Validation
) -> dict[str, dict[str, Any]]:
    """Per float output: the lowest per-sample correlation with the original (``validate.correlation``)."""
    out = {}
    for key, ref in reference.items():
        if key in result:
            found = validate.correlation(
                np.asarray(ref), np.asarray(result[key]), rtol=validation.rtol, atol=validation.atol
            )
            if found is not None:
                out[key] = found
    return out


def tolerances(validation: Validation, precision: str) -> tuple[float, float]:
    """(rtol, atol) for the precision the ONNX graph computes in."""
    if precision == "INT8":
        return validation.int8_rtol, validation.int8_atol
    if precision == "FP16":
        return validation.fp16_rtol, validation.fp16_atol
    return validation.rtol, validation.atol


def compare_on_gpu_emulation(
    reference: dict[str, np.ndarray], result: dict[str, np.ndarray], validation: Validation, prefix: dict[str, Any]
) -> dict[str, Any]:
    """The FP16 gate on the GPU's numbers (every FP16 tensor stored in FP16); the error says what was tried."""
    rtol, atol = validation.fp16_rtol, validation.fp16_atol
    try:
        errors = validate.compare(reference, result, rtol=rtol, atol=atol)
    except ValidationError as exc:
        kept = prefix.get("computeNodes", 0)
        raise ValidationError(
            f"on a GPU, which stores every FP16 tensor in FP16 (emulated here on the CPU), {exc}; the first "
            f"{kept} of {prefix.get('ofComputeNodes', '?')} Conv/MatMul nodes were kept FP32 and that was not "
            f"enough: publish FP32 (tensorrt.precision: FP32) or, if this error is acceptable, raise "
            f"validation.fp16Atol/fp16Rtol"
        ) from None
    errors["toleranceUse"] = round(validate.tolerance_use(reference, result, rtol=rtol, atol=atol), 4)
    return errors


def compare(
    reference: dict[str, np.ndarray],
    result: dict[str, np.ndarray],
    validation: Validation,
    *,
    int8: bool,
    precision: str | None = None,
    remedy: str = "publish FP16 or FP32 (tensorrt.precision)",
) -> dict[str, Any]:
    """Errors, top-1 agreement and correlation; raise ValidationError where a gate fails.

    The elementwise check uses the precision's tolerances; ``remedy`` ends an INT8 failure message:
    what would actually help this conversion.
    """
    rtol, atol = tolerances(validation, "INT8" if int8 else (precision or "FP32"))
    agreement = top1_agreement(reference, result)
    if int8:
        low = {k: v for k, v in agreement.items() if v < validation.min_top1_agreement}
        if low:
            key, share = next(iter(low.items()))
            raise ValidationError(
                f"INT8 output {key!r} picks the original's top-1 class on only {share:.0%} of the validation "
                f"samples (validation.minTop1Agreement {validation.min_top1_agreement:.0%}); {remedy}"
            )
    corr = correlations(reference, result, validation)
    poor = {k: c for k, c in corr.items() if c["min"] < validation.min_correlation}
    if poor:
        key, worst = next(iter(poor.items()))
        what = "INT8 output" if int8 else "output"
        raise ValidationError(
            f"{what} {key!r} does not follow the original: sample {worst['sample']} correlates {worst['min']:.3f} "
            f"with it (validation.minCorrelation {validation.min_correlation:g}; a constant or all-zero output "
            f"correlates 0)" + (f"; {remedy}" if int8 else "")
        )
    errors = validate.compare(reference, result, rtol=rtol, atol=atol)
    errors.update(rtol=rtol, atol=atol, top1Agreement=agreement)
    errors["correlation"] = {k: round(c["min"], 6) for k, c in corr.items()}
    errors["minCorrelation"] = validation.min_correlation
    if int8:
        errors["minTop1Agreement"] = validation.min_top1_agreement
    return errors


def latency(reference: ModelFn, converted: ModelFn, feeds: dict[str, np.ndarray], *, runs: int = 10) -> dict[str, Any]:
    """Median latency of the TF original and the ORT model on the same batch, measured back to back."""
    return {
        "before": validate.latency_ms(reference, feeds, runs=runs),
        "after": validate.latency_ms(converted, feeds, runs=runs),
        "beforeRuntime": "tensorflow",
        "afterRuntime": "onnxruntime-cpu",
        "batch": int(len(next(iter(feeds.values())))) if feeds else 0,
        "runs": runs,
    }
