"""The ONNX path against TensorFlow: latency side by side, and INT8 accuracy on a trained model.

Area ``onnx`` (``python -m bench --only onnx [--quick]``).  Per model
(MobileNetV2 and ResNet50, random weights) and batch (1, 8), interleaved call
by call in one run:

- TF original (the Keras SavedModel) and the edgeopt-optimized TF SavedModel,
- ORT FP32 (``backend: onnxruntime``, the tf2onnx export),
- ORT INT8 in the CPU layout edgeopt picks (U8S8 QOperator), and for the
  record the two Q/DQ layouts (U8S8 Q/DQ, and S8S8 Q/DQ — TensorRT's layout)
  quantized from the same calibration batches.

Accuracy: a small CNN trained here on scikit-learn's bundled digits (8x8
images, no download), converted through the real pipeline at FP32 and INT8
(CPU layout, calibrated on training images); test accuracy of both.

Everything is converted in-process with ``convert_model`` (the same code the
Job runs).  Only ratios within this one run mean anything on a shared machine.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np

from bench.context import Context
from bench.report import AreaResult, Row, Target
from bench.stats import interleave

AREA = "onnx"
BATCHES = (1, 8)
#: Issue 12's targets: INT8 latency vs ORT FP32 at batch 1, per model.
INT8_TARGETS = {"mobilenetv2": 0.7, "resnet50": 0.6}


def _manifest(name: str, src: Path, repo: Path, **spec: Any) -> Any:
    from edgeopt.spec import parse_manifest

    body: dict[str, Any] = {
        "source": {"uri": f"file://{src}", "format": "SavedModel"},
        "tensorrt": {"enabled": False, "precision": "FP32"},  # FP32 unless the caller says INT8
        "target": {"repository": f"file://{repo}", "modelName": name},
    }
    body.update(spec)
    return parse_manifest(
        {"apiVersion": "edgeopt.io/v1alpha1", "kind": "OptimizedModel", "metadata": {"name": name}, "spec": body}
    )


def _convert(ctx: Context, name: str, src: Path, **spec: Any) -> Any:
    from edgeopt.converter.pipeline import convert_model

    artifact = convert_model(_manifest(name, src, ctx.dir("repo"), **spec), ctx.dir("work", name))
    ctx.log(f"{name}: converted in {artifact.report.get('conversionSeconds')}s")
    return artifact


def _int8_spec(cal: Path, samples: int) -> dict[str, Any]:
    return {
        "target": {"repository": "file:///unused", "modelName": "x", "backend": "onnxruntime", "device": "CPU"},
        "tensorrt": {
            "enabled": False,
            "precision": "INT8",
            "calibration": {"uri": f"file://{cal}", "samples": samples},
        },
        # Random weights give near-uniform scores: top-1 is noise, so the gate here is elementwise only.
        "validation": {"samples": 4, "int8Rtol": 1.0, "int8Atol": 1.0, "minTop1Agreement": 0.0},
    }


def _ort_run(path: Path, feeds: dict[str, np.ndarray]) -> Any:
    from edgeopt.converter.onnx_validate import ort_runner, ort_session

    runner = ort_runner(ort_session(path))
    return lambda: runner(feeds)


def _prepare(ctx: Context, arch: str, size: int) -> dict[str, Any]:
    """Original, optimized TF, ORT FP32 and the INT8 layouts of one architecture."""
    from edgeopt.converter import onnx_quantize
    from edgeopt_dev.samples import write_keras_model

    label = f"{arch}@{size}"
    info = write_keras_model(ctx.dir("src", label), "savedmodel", architecture=arch, input_size=size)
    src = Path(info["dir"]) / info["path"]
    name = label.replace("@", "-")
    optimized = _convert(ctx, f"{name}-tf", src, target={"repository": "file:///x", "modelName": "x"})
    fp32 = _convert(
        ctx,
        f"{name}-fp32",
        src,
        target={"repository": "file:///x", "modelName": "x", "backend": "onnxruntime", "device": "CPU"},
    )
    in_name = fp32.inputs[0].name
    samples = 16 if ctx.quick else 64
    cal = ctx.dir("cal") / f"{name}.npz"
    np.savez(cal, **{in_name: np.random.default_rng(9).random((samples, size, size, 3)).astype(np.float32)})
    int8 = _convert(ctx, f"{name}-int8", src, **_int8_spec(cal, samples))
    paths = {"ORT INT8 U8S8-QOperator": int8.savedmodel_dir}
    with np.load(cal) as data:
        batches = [{in_name: b} for b in np.split(data[in_name], samples // 8)]
    for layout in (onnx_quantize.U8S8_QDQ, onnx_quantize.S8S8_QDQ):
        out = ctx.dir("layouts") / f"{name}-{layout.name}.onnx"
        onnx_quantize.quantize_with(fp32.savedmodel_dir, out, layout, batches, "MinMax")
        paths[f"ORT INT8 {layout.name}"] = out
    return {
        "label": label,
        "arch": arch,
        "src": src,
        "optimized": optimized,
        "fp32": fp32,
        "int8": paths,
        "layout": int8.report["onnx"]["int8"]["layout"]["name"],
    }


def _latency(ctx: Context, prep: dict[str, Any], batch: int, iterations: int) -> dict[str, Any]:
    from bench.tfrun import load_runner

    orig, feeds, keep_a = load_runner(prep["src"], batch)
    opt, _, keep_b = load_runner(prep["optimized"].savedmodel_dir, batch)
    contenders = {"TF original": orig, "TF edgeopt-optimized": opt}
    contenders["ORT FP32"] = _ort_run(prep["fp32"].savedmodel_dir, feeds)
    for name, path in prep["int8"].items():
        contenders[name] = _ort_run(path, feeds)
    samples = interleave(contenders, iterations, warmup=3)
    del keep_a, keep_b
    gc.collect()
    return {k: v.summary() for k, v in samples.items()}


def _latency_rows(result: AreaResult, prep: dict[str, Any], batch: int, lat: dict[str, Any]) -> None:
    label, n = prep["label"], lat["ORT FP32"]["n"]
    for name, s in lat.items():
        result.rows.append(
            Row(AREA, f"{label} b{batch} {name} p50 / p99 (n={n})", s["p50"], None, "ms", note=f"p99 {s['p99']:.2f} ms")
        )
    fp32, tf_opt = lat["ORT FP32"]["p50"], lat["TF edgeopt-optimized"]["p50"]
    result.rows.append(
        Row(
            AREA,
            f"{label} b{batch} ORT FP32 vs edgeopt-optimized TF, p50",
            fp32,
            tf_opt,
            "ms",
            Target(1.0),
            "TF edgeopt-optimized",
        )
    )
    int8 = lat[f"ORT INT8 {prep['layout']}"]["p50"]
    target = Target(INT8_TARGETS[prep["arch"]]) if batch == 1 else None
    result.rows.append(
        Row(
            AREA, f"{label} b{batch} ORT INT8 ({prep['layout']}) vs ORT FP32, p50", int8, fp32, "ms", target, "ORT FP32"
        )
    )
    for other in ("U8S8-QDQ", "S8S8-QDQ"):
        result.rows.append(
            Row(
                AREA,
                f"{label} b{batch} ORT INT8 {other} vs ORT FP32, p50",
                lat[f"ORT INT8 {other}"]["p50"],
                fp32,
                "ms",
                None,
                "ORT FP32",
            )
        )


def digits_model(ctx: Context) -> dict[str, Any]:
    """A small CNN trained on sklearn's digits, exported as a SavedModel; cached for every area of the run.

    Returns ``src`` (the SavedModel), ``cal`` (an .npz of 128 training images keyed ``image``),
    ``x_test`` and ``y_test`` (the held-out split).
    """
    if "digits" in ctx.cache:
        cached: dict[str, Any] = ctx.cache["digits"]
        return cached
    import keras
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.3, random_state=0)
    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(10, activation="softmax")(keras.layers.Dense(64, activation="relu")(h))
    model = keras.Model(inp, out)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=3 if ctx.quick else 10, batch_size=32, verbose=0)
    src = ctx.dir("digits") / "saved_model"
    model.export(str(src), verbose=False)
    cal = ctx.dir("digits") / "calibration.npz"
    np.savez(cal, image=x_train[:128])
    tf_probs = model.predict(x_test, verbose=0)
    ctx.cache["digits"] = {
        "src": src,
        "cal": cal,
        "x_test": x_test,
        "y_test": y_test,
        "tfAccuracy": float(np.mean(np.argmax(tf_probs, axis=1) == y_test)),
    }
    return ctx.cache["digits"]


def _digits(ctx: Context) -> dict[str, Any]:
    """Convert the digits CNN at FP32 and INT8, and score both on the held-out split."""
    d = digits_model(ctx)
    src, cal, x_test, y_test = d["src"], d["cal"], d["x_test"], d["y_test"]
    fp32 = _convert(
        ctx,
        "digits-fp32",
        src,
        target={"repository": "file:///x", "modelName": "x", "backend": "onnxruntime", "device": "CPU"},
    )
    spec = _int8_spec(cal, 128)
    spec["validation"] = {"samples": 8}  # a trained model: the default INT8 gates apply
    int8 = _convert(ctx, "digits-int8", src, **spec)
    acc = {}
    for key, art in (("fp32", fp32), ("int8", int8)):
        scores = _ort_run(art.savedmodel_dir, {"image": x_test})()
        (probs,) = scores.values()
        acc[key] = float(np.mean(np.argmax(probs, axis=1) == y_test))
    acc["layout"] = int8.report["onnx"]["int8"]["layout"]["name"]
    acc["testSamples"] = len(y_test)
    return acc


def run(ctx: Context) -> AreaResult:
    result = AreaResult(AREA)
    models = [("mobilenetv2", 96), ("resnet50", 64)] if ctx.quick else [("mobilenetv2", 224), ("resnet50", 224)]
    iterations = 15 if ctx.quick else 60
    for arch, size in models:
        prep = _prepare(ctx, arch, size)
        result.details[prep["label"]] = {"layout": prep["layout"], "latencyMs": {}}
        for batch in BATCHES:
            lat = _latency(ctx, prep, batch, iterations)
            ctx.log(f"{prep['label']} b{batch}: " + ", ".join(f"{k} {v['p50']:.2f}" for k, v in lat.items()))
            result.details[prep["label"]]["latencyMs"][batch] = lat
            _latency_rows(result, prep, batch, lat)
        del prep
        gc.collect()
    acc = _digits(ctx)
    result.details["digits"] = acc
    drop_pp = (acc["fp32"] - acc["int8"]) * 100
    result.rows.append(
        Row(
            AREA,
            f"digits CNN test accuracy FP32 → INT8 {acc['layout']} (n={acc['testSamples']})",
            acc["int8"],
            acc["fp32"],
            "",
            note=f"FP32 {acc['fp32']:.4f}",
        )
    )
    result.rows.append(Row(AREA, "digits CNN INT8 accuracy drop", drop_pp, None, "pp", Target(1.0, on="value")))
    return result
