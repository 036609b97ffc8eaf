"""Prepare the H200 run of ``bench/gpu_ort.py`` here, where TensorFlow is: models, inputs, TF's outputs.

``python -m bench.gpu_ort_prep OUTDIR`` writes, per model (MobileNetV2,
ResNet50 and EfficientNetB0 at 224x224, 1000 logits, random weights with
batch-norm statistics taken from data so activations have a trained model's
scale):

- ``NAME/fp32.onnx``: the converter's FP32 artefact (``convert_model``,
  backend onnxruntime, device GPU, validated against TF on the CPU);
- ``NAME/fp16.onnx``: ``onnx_fp16.to_fp16`` of it (what precision FP16 publishes);
- ``NAME/int8.onnx``: the S8S8 Q/DQ layout (``onnx_quantize``), what INT8 publishes for a GPU;
- ``NAME/ref.npz``: TensorFlow's logits for the shared inputs;

plus ``images.npz`` (64 uint8 images; the models take ``x / 127.5 - 1``) and
``cpu.json``: each artefact's error against TF on the CPU here, and the FP16
converters compared (ORT's ``float16`` and onnxconverter-common's, when
importable) by error, so the choice in ``onnx_fp16`` is a measured one.

Not part of CI; the GPU side and its recipe are in ``bench/gpu_ort.py``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ARCHS = ("mobilenetv2", "resnet50", "efficientnetb0")
SIZE = 224
BATCH = 64
CALIBRATION = 16
#: GPU_PREP_FP16_ONLY=1: redo only NAME/fp16.onnx (and its cpu.json entry) from an earlier run's fp32.onnx.
FP16_ONLY = os.environ.get("GPU_PREP_FP16_ONLY") == "1"


def images(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def as_input(u8: np.ndarray) -> np.ndarray:
    return (u8.astype(np.float32) / 127.5 - 1.0).astype(np.float32)


def build(arch: str) -> Any:
    """Keras application, logits, weights random, BN statistics set from one batch (momentum 0)."""
    import keras

    keras.utils.set_random_seed(3)
    apps = {
        "mobilenetv2": keras.applications.MobileNetV2,
        "resnet50": keras.applications.ResNet50,
        "efficientnetb0": keras.applications.EfficientNetB0,
    }
    model = apps[arch](input_shape=(SIZE, SIZE, 3), weights=None, classes=1000, classifier_activation=None)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(as_input(images(11, 16)), training=True)
    return model


def errors(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    scale = float(np.max(np.abs(ref)))
    diff = np.abs(got.astype(np.float64) - ref)
    return {
        "maxAbs": float(diff.max()),
        "maxRelToMax": float(diff.max() / scale),
        "top1": float(np.mean(np.argmax(got, 1) == np.argmax(ref, 1))),
        "refMaxAbs": scale,
    }


def _cpu(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {sess.get_inputs()[0].name: x})[0])


def _convert_fp32(arch: str, src: Path, work: Path, dst: Path) -> dict[str, Any]:
    from edgeopt.converter.pipeline import convert_model
    from edgeopt.spec import parse_manifest

    spec = {
        "source": {"uri": f"file://{src}", "format": "SavedModel"},
        "tensorrt": {"enabled": False, "precision": "FP32"},
        "target": {"repository": f"file://{work}/repo", "modelName": arch, "backend": "onnxruntime", "device": "GPU"},
        "validation": {"samples": 2, "rtol": 1.0, "atol": 1.0},  # recorded, not gating: random weights
    }
    manifest = {"apiVersion": "edgeopt.io/v1alpha1", "kind": "OptimizedModel", "metadata": {"name": arch}, "spec": spec}
    art = convert_model(parse_manifest(manifest), work / "convert")
    Path(art.savedmodel_dir).rename(dst)
    return {"validation": art.report.get("validation"), "ops": art.report["onnx"]["ops"]["total"]}


def _fp16_use_of(model: Any, cal: np.ndarray, fp32: Path) -> Any:
    """What the converter's FP16 stage measures: tolerance use against TF on 8 samples, as a GPU computes.

    The samples are calibration images (``validation.samples`` default), never the images the GPU table
    is measured on, so the FP32 prefix is not fitted to the test set.
    """
    import onnx

    from edgeopt.converter.onnx_validate import GpuFp16Check
    from edgeopt.spec import Validation

    graph = onnx.load(str(fp32), load_external_data=False).graph
    x = cal[:8]
    ref = {graph.output[0].name: np.asarray(model(x, training=False))}
    return GpuFp16Check(ref, {graph.input[0].name: x}, Validation())


def _fp16_variants(fp32: Path, out: Path, use_of: Any = None) -> dict[str, Any]:
    """ORT's float16 (published, with the converter's FP32 prefix fit) and onnxconverter-common's (compared)."""
    import onnx

    from edgeopt.converter import onnx_fp16

    found: dict[str, Any] = {"published": onnx_fp16.to_fp16(fp32, out / "fp16.onnx", use_of)}
    try:
        from onnxconverter_common import float16 as occ
    except ImportError:
        return found
    blocked = onnx_fp16.op_block_list()
    half = occ.convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True, op_block_list=blocked)
    onnx.save_model(half, str(out / "fp16.occ.onnx"))
    found["onnxconverter-common"] = {"nodes": onnx_fp16.node_precisions(half)}
    return found


def prepare(arch: str, root: Path, x: np.ndarray, cal: np.ndarray) -> dict[str, Any]:
    from edgeopt.converter import onnx_quantize

    t0 = time.monotonic()
    out = root / arch
    out.mkdir(parents=True, exist_ok=True)
    work = root / "_work" / arch
    model = build(arch)
    if not FP16_ONLY:
        model.export(str(work / "saved_model"), verbose=False)
    ref = np.concatenate([np.asarray(model(x[i : i + 16], training=False)) for i in range(0, len(x), 16)])
    if FP16_ONLY and float(np.abs(np.load(out / "ref.npz")["logits"] - ref).max()) > 1e-4:
        raise SystemExit(f"{arch}: the rebuilt model is not the one of fp32.onnx; run without GPU_PREP_FP16_ONLY")
    np.savez(out / "ref.npz", logits=ref.astype(np.float32))
    if FP16_ONLY:  # the FP32 artefact and TF's logits of an earlier run; the same seeded model
        info: dict[str, Any] = {
            "fp16": _fp16_variants(out / "fp32.onnx", out, _fp16_use_of(model, cal, out / "fp32.onnx"))
        }
        info["cpuErrors"] = {"fp16": errors(np.load(out / "ref.npz")["logits"][:8], _cpu(out / "fp16.onnx", x[:8]))}
        (out / "fp16.occ.onnx").unlink(missing_ok=True)
        return info
    info = {"fp32": _convert_fp32(arch, work / "saved_model", work, out / "fp32.onnx")}
    info["fp16"] = _fp16_variants(out / "fp32.onnx", out, _fp16_use_of(model, cal, out / "fp32.onnx"))
    name = model.inputs[0].name
    batches = [{name: cal[i : i + 8]} for i in range(0, len(cal), 8)]
    q = onnx_quantize.quantize_with(out / "fp32.onnx", out / "int8.onnx", onnx_quantize.S8S8_QDQ, batches, "MinMax")
    info["int8"] = {"layout": q["layout"]["name"], "fileBytes": q["fileBytes"]}
    probe = x[:8]
    info["cpuErrors"] = {p.stem: errors(ref[:8], _cpu(p, probe)) for p in sorted(out.glob("*.onnx"))}
    (out / "fp16.occ.onnx").unlink(missing_ok=True)  # measured here only; the GPU runs what edgeopt publishes
    info["inputName"] = name
    info["seconds"] = round(time.monotonic() - t0, 1)
    return info


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(".gpubench/data")
    archs = argv[1:] or list(ARCHS)
    root.mkdir(parents=True, exist_ok=True)
    u8 = images(1, BATCH)
    np.savez(root / "images.npz", images=u8)
    x, cal = as_input(u8), as_input(images(2, CALIBRATION))
    report_path = root / "cpu.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    for arch in archs:
        report[arch] = {**report.get(arch, {}), **prepare(arch, root, x, cal)}
        report_path.write_text(json.dumps(report, indent=2, default=str))
        print(arch, json.dumps(report[arch]["cpuErrors"]), report[arch]["seconds"], "s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
