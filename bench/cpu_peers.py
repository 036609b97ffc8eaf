"""CPU edge nodes: edgeopt's CPU artefacts against the CPU runtimes a user would pick instead.

Area ``cpu`` (``python -m bench --only cpu [--quick]``).  Per model
(MobileNetV2 and ResNet50 at 224, random weights) and batch (1, 8), every
contender is called alternately on the same inputs in one process, 2 threads
each:

- edgeopt: ORT INT8 (``backend: onnxruntime``, U8S8 QOperator), OpenVINO IR
  (``backend: openvino``) at FP32 weights run at OpenVINO's default precision
  (bf16 on AVX512-BF16/AMX CPUs) and INT8 through NNCF — each run as Triton
  runs it (``templates/_edgeopt_openvino.py``: static shapes for batch 1 and 8);
- peers, as their own docs convert a SavedModel: OpenVINO (``convert_model`` of
  the SavedModel; default precision, true f32 via ``INFERENCE_PRECISION_HINT``,
  and NNCF INT8 from the same calibration data) and TFLite through LiteRT
  (XNNPACK FP32, and full INT8 with the same data as representative dataset);
- for the record (not a peer): the OpenVINO NNCF INT8 peer reshaped to the
  batch, which is where edgeopt's static shapes come from.

The target row per model and batch is edgeopt's fastest artefact ÷ the fastest
peer (p50), ≤ 1.0×.  Accuracy: the digits CNN (``onnx_paths.digits_model``)
through each new artefact against TensorFlow; bf16/INT8 report their max
error against TF from the converter's validation.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.context import Context
from bench.onnx_paths import _convert, digits_model
from bench.report import AreaResult, Row, Target
from bench.stats import interleave

AREA = "cpu"
BATCHES = (1, 8)
THREADS = 2
RECORD = "OpenVINO NNCF INT8 reshaped (record)"
#: Idle time before each timed call: longer than ONNX Runtime's and OpenVINO's spin-wait after a run.
GAP_S = 0.02
Runner = Callable[[], Any]


def _specs(cal: Path, samples: int) -> dict[str, dict[str, Any]]:
    """edgeopt's CPU artefacts: name → spec overrides."""
    int8_cal = {"calibration": {"uri": f"file://{cal}", "samples": samples}}
    # Random weights give near-uniform scores: top-1 is noise, so the gate here is elementwise only.
    loose = {"samples": 4, "int8Rtol": 1.0, "int8Atol": 1.0, "minTop1Agreement": 0.0}
    ov = {"repository": "file:///unused", "modelName": "x", "backend": "openvino"}
    return {
        "edgeopt ORT INT8": {
            "target": {**ov, "backend": "onnxruntime", "device": "CPU"},
            "tensorrt": {"enabled": False, "precision": "INT8", **int8_cal},
            "validation": loose,
        },
        "edgeopt OpenVINO default": {
            "target": ov,
            "tensorrt": {"enabled": False, "precision": "FP32"},
            "validation": loose,
        },
        "edgeopt OpenVINO INT8": {
            "target": ov,
            "tensorrt": {"enabled": False, "precision": "INT8", **int8_cal},
            "validation": loose,
        },
    }


def _calibration(path: Path, name: str, size: int, samples: int) -> np.ndarray:
    data = np.random.default_rng(9).random((samples, size, size, 3)).astype(np.float32)
    np.savez(path, **{name: data})
    return data


def _peer_models(src: Path, data: np.ndarray, work: Path) -> dict[str, Any]:
    """The peers' own conversions of the SavedModel: OpenVINO (FP32, NNCF INT8) and TFLite (FP32, full INT8)."""
    import nncf
    import openvino as ov
    import tensorflow as tf

    fp32 = ov.convert_model(str(src))
    batches = [data[i : i + 8] for i in range(0, len(data), 8)]  # as edgeopt feeds NNCF (onnx_quantize's batches)
    int8 = nncf.quantize(fp32, nncf.Dataset(batches), subset_size=len(batches))
    out: dict[str, Any] = {"ov fp32": fp32, "ov int8": int8}
    for name, quantized in (("tflite fp32", False), ("tflite int8", True)):
        conv = tf.lite.TFLiteConverter.from_saved_model(str(src))
        if quantized:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([data[i : i + 1]] for i in range(len(data)))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        path = work / f"{name.replace(' ', '-')}.tflite"
        path.write_bytes(conv.convert())
        out[name] = path
    return out


def _openvino(model: Any, x: np.ndarray, *, f32: bool = False, static: bool = False) -> Runner:
    import openvino as ov

    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": THREADS, "PERFORMANCE_HINT": "LATENCY"}
    if f32:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    if static:
        model = model.clone()
        model.reshape({model.inputs[0].get_any_name(): ov.PartialShape(list(x.shape))})
    request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
    return lambda: request.infer({0: x}).to_tuple()


def _tflite(path: Path, x: np.ndarray) -> Runner:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=THREADS)  # XNNPACK is its default CPU delegate
    (inp,) = interp.get_input_details()
    interp.resize_tensor_input(inp["index"], list(x.shape))
    interp.allocate_tensors()
    out = interp.get_output_details()[0]["index"]

    def run() -> Any:
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out)

    return run


def _edgeopt_runner(art: Any, feeds: dict[str, np.ndarray]) -> Runner:
    if art.model_format == "openvino":
        from edgeopt.converter.openvino_export import runner_module

        ov_runner = runner_module().Runner(str(art.savedmodel_dir), threads=THREADS, static_batches=BATCHES)
        return lambda: ov_runner.run(feeds)
    from edgeopt.converter.onnx_validate import ort_runner, ort_session

    ort = ort_runner(ort_session(art.savedmodel_dir, threads=THREADS))
    return lambda: ort(feeds)


def _prepare(ctx: Context, arch: str, size: int) -> dict[str, Any]:
    from edgeopt_dev.samples import write_keras_model

    label = f"{arch}@{size}"
    info = write_keras_model(ctx.dir("cpu-src", label), "savedmodel", architecture=arch, input_size=size)
    src = Path(info["dir"]) / info["path"]
    samples = 16 if ctx.quick else 64
    in_name = info["inputs"][0]["name"]
    cal = ctx.dir("cpu-cal") / f"{arch}-{size}.npz"
    data = _calibration(cal, in_name, size, samples)
    name = label.replace("@", "-")
    specs = _specs(cal, samples).items()
    edgeopt = {k: _convert(ctx, f"cpu-{name}-{i}", src, **spec) for i, (k, spec) in enumerate(specs)}
    peers = _peer_models(src, data, ctx.dir("cpu-peers", label))
    ctx.log(f"{label}: edgeopt artefacts and peers converted")
    return {"label": label, "in": edgeopt["edgeopt ORT INT8"].inputs[0].name, "edgeopt": edgeopt, "peers": peers}


def _contenders(prep: dict[str, Any], x: np.ndarray) -> tuple[dict[str, Runner], list[str]]:
    """Every runner for one batch; the second value names the peers."""
    feeds = {prep["in"]: x}
    runners = {name: _edgeopt_runner(art, feeds) for name, art in prep["edgeopt"].items()}
    p = prep["peers"]
    peers = {
        "OpenVINO default": _openvino(p["ov fp32"], x),
        "OpenVINO true f32": _openvino(p["ov fp32"], x, f32=True),
        "OpenVINO NNCF INT8": _openvino(p["ov int8"], x),
        "TFLite XNNPACK FP32": _tflite(p["tflite fp32"], x),
        "TFLite XNNPACK INT8": _tflite(p["tflite int8"], x),
    }
    runners.update(peers)
    runners[RECORD] = _openvino(p["ov int8"], x, static=True)
    return runners, list(peers)


def _rows(result: AreaResult, label: str, batch: int, lat: dict[str, Any], peers: list[str]) -> None:
    """The target row (p50, as the issue states times) with the ratio of the minima in its note.

    On a shared machine the p50 of each contender swings with the neighbours' load; the fastest call of
    each (the minimum) is what the runtime does when it gets the cores, so its ratio is printed beside.
    """
    ours = {k: v["p50"] for k, v in lat.items() if k.startswith("edgeopt")}
    theirs = {k: lat[k]["p50"] for k in peers}
    best, best_peer = min(ours, key=ours.__getitem__), min(theirs, key=theirs.__getitem__)
    min_ours = min((k for k in lat if k.startswith("edgeopt")), key=lambda k: lat[k]["min"])
    min_peer = min(peers, key=lambda k: lat[k]["min"])
    min_ratio = lat[min_ours]["min"] / lat[min_peer]["min"]
    every = ", ".join(f"{k} {v['p50']:.1f}/{v['min']:.1f}" for k, v in lat.items())
    result.rows.append(
        Row(
            AREA,
            f"{label} b{batch} edgeopt fastest CPU artefact ({best}) vs fastest peer, p50",
            ours[best],
            theirs[best_peer],
            "ms",
            Target(1.0),
            best_peer,
            note=f"minima: {min_ours} ÷ {min_peer} = {min_ratio:.2f}×; n={lat[best]['n']}, {THREADS} "
            f"threads; p50/min ms: {every}",
        )
    )
    for name, s in lat.items():
        result.point(label, name, batch=batch, p50_ms=s["p50"], p99_ms=s["p99"])


def _latency(ctx: Context, result: AreaResult, prep: dict[str, Any], iterations: int) -> None:
    size = prep["label"].split("@")[1]
    for batch in BATCHES:
        x = np.random.default_rng(batch).standard_normal((batch, int(size), int(size), 3)).astype(np.float32)
        runners, peers = _contenders(prep, x)
        # Nine runtimes in one process: a fresh order every round and a short idle gap, so none always
        # follows the same neighbour's still-spinning threads (a plain rotation fixes who follows whom).
        timed = interleave(runners, iterations, warmup=3, shuffle_seed=batch, gap_s=GAP_S)
        lat = {k: v.summary() for k, v in timed.items()}
        del runners
        gc.collect()
        ctx.log(f"{prep['label']} b{batch}: " + ", ".join(f"{k} {v['p50']:.2f}" for k, v in lat.items()))
        result.details.setdefault(prep["label"], {})[batch] = lat
        _rows(result, prep["label"], batch, lat, peers)


def _accuracy(ctx: Context, result: AreaResult) -> None:
    """The digits CNN through edgeopt's OpenVINO artefacts (as Triton runs them): accuracy vs TF FP32."""
    from edgeopt.converter.openvino_export import runner_module

    d = digits_model(ctx)
    ov = {"repository": "file:///unused", "modelName": "x", "backend": "openvino"}
    cal = {"calibration": {"uri": f"file://{d['cal']}", "samples": 128}}
    arts = {
        "OpenVINO default": _convert(
            ctx,
            "cpu-digits-ov",
            d["src"],
            target=ov,
            tensorrt={"enabled": False, "precision": "FP32"},
            validation={"samples": 8, "rtol": 0.05, "atol": 0.01},
        ),
        "OpenVINO INT8": _convert(
            ctx,
            "cpu-digits-ov-int8",
            d["src"],
            target=ov,
            tensorrt={"enabled": False, "precision": "INT8", **cal},
            validation={"samples": 8},
        ),
    }
    tf_acc = d["tfAccuracy"]
    details: dict[str, Any] = {"tfAccuracy": tf_acc, "testSamples": len(d["y_test"])}
    for name, art in arts.items():
        runner = runner_module().Runner(str(art.savedmodel_dir), threads=THREADS)
        (probs,) = runner.run({"image": d["x_test"]}).values()
        acc = float(np.mean(np.argmax(probs, axis=1) == d["y_test"]))
        ov_rep, val = art.report["onnx"]["openvino"], art.report["validation"]
        details[name] = {
            "accuracy": acc,
            "runtimePrecision": ov_rep["runtimePrecision"],
            "maxAbsErrorVsTF": val["maxAbsError"],
            "maxRelErrorVsTF": val["maxRelError"],
        }
        result.rows.append(
            Row(
                AREA,
                f"digits CNN accuracy drop, edgeopt {name} ({ov_rep['runtimePrecision']}) vs TF "
                f"FP32 (n={len(d['y_test'])})",
                (tf_acc - acc) * 100,
                None,
                "pp",
                Target(1.0, on="value"),
                note=f"accuracy {acc:.4f} vs {tf_acc:.4f}; max abs error vs TF " f"{val['maxAbsError']:.2g}",
            )
        )
    result.details["digits"] = details


def run(ctx: Context) -> AreaResult:
    result = AreaResult(AREA)
    models = [("mobilenetv2", 64)] if ctx.quick else [("mobilenetv2", 224), ("resnet50", 224)]
    iterations = {"mobilenetv2": 8 if ctx.quick else 40, "resnet50": 40}
    for arch, size in models:
        prep = _prepare(ctx, arch, size)
        _latency(ctx, result, prep, iterations[arch])
        del prep
        gc.collect()
    _accuracy(ctx, result)
    return result
