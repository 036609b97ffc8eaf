"""The GPU side of the ONNX path, on ONNX Runtime's CUDA EP: one command, the whole table.

Runs on a machine with onnxruntime-gpu, numpy and a GPU, and nothing else of
edgeopt (no TensorFlow there): ``python3 bench/gpu_ort.py DATA OUT`` where
DATA is what ``bench/gpu_ort_prep.py`` wrote here (per model fp32/fp16/int8
ONNX + TF's logits, and the shared uint8 images).  Recipe for the H200 and
the table: ``bench/README.md`` ("GPU: ONNX Runtime CUDA EP").

1. Sweep: CUDA EP options on MobileNetV2 at batch 1 and 64, FP32/FP16/INT8,
   compute-only (IO binding, input and output on the device) and end-to-end.
2. Profile: ORT's profiler on MobileNetV2 b64, default vs tuned, time by op type.
3. Table: 3 models x FP32/FP16/INT8 x batch 1/8/64, end-to-end and
   compute-only, default options vs the tuned ones (and CUDA graphs, which
   Triton's backend cannot use: it binds each request's own buffers), with
   the max error vs TensorFlow and top-1 agreement.

Results go to OUT/gpu_ort.json as they come (a run cut short keeps what it had).
Not part of CI.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

ARCHS = ("mobilenetv2", "resnet50", "efficientnetb0")
#: GPU_ORT_PRECISIONS=fp16 (comma list) and GPU_ORT_VARIANTS=nhwc narrow a re-run; GPU_ORT_TABLE_ONLY=1 skips
#: the sweep and the profile.
PRECISIONS = tuple(os.environ.get("GPU_ORT_PRECISIONS", "fp32,fp16,int8").split(","))
BATCHES = (1, 8, 64)
#: CUDA EP option sets tried in the sweep (ORT's defaults: EXHAUSTIVE search, NCHW, TF32 allowed, no graphs).
SWEEP: dict[str, dict[str, str]] = {
    "default": {},
    "heuristic": {"cudnn_conv_algo_search": "HEURISTIC"},
    "nhwc": {"prefer_nhwc": "1"},
    "nhwc+tf32off": {"prefer_nhwc": "1", "use_tf32": "0"},
    "tf32off": {"use_tf32": "0"},
    "nhwc+ws0": {"prefer_nhwc": "1", "cudnn_conv_use_max_workspace": "0"},
    "graph": {"enable_cuda_graph": "1"},
    "nhwc+graph": {"prefer_nhwc": "1", "enable_cuda_graph": "1"},
}
TABLE_VARIANTS = tuple(os.environ.get("GPU_ORT_VARIANTS", "default,nhwc,nhwc+graph").split(","))
TABLE_ONLY = os.environ.get("GPU_ORT_TABLE_ONLY") == "1"
#: Seconds this script may run (a device call has 600 in all); GPU_ORT_DEADLINE_S when set-up took some.
DEADLINE_S = float(os.environ.get("GPU_ORT_DEADLINE_S", "540"))
T0 = time.monotonic()
#: GPU_ORT_CPU=1: a smoke run of this script on the CPU EP (to check it here before spending device time).
CPU_SMOKE = os.environ.get("GPU_ORT_CPU") == "1"
EP, DEVICE = ("CPUExecutionProvider", "cpu") if CPU_SMOKE else ("CUDAExecutionProvider", "cuda")


def session(path: Path, options: dict[str, str], profile: str | None = None) -> Any:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = profile
    sess = ort.InferenceSession(str(path), so, providers=[(EP, {} if CPU_SMOKE else options)])
    if sess.get_providers()[0] != EP:
        raise RuntimeError(f"{EP} not used: {sess.get_providers()}")
    return sess


def _timed(fn: Any, budget_s: float = 0.4) -> dict[str, float]:
    for _ in range(5):
        fn()
    t = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t, 1e-5)
    n = int(min(300, max(15, budget_s / one)))
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
    samples.sort()
    return {"p50": round(statistics.median(samples), 4), "p90": round(samples[int(0.9 * (n - 1))], 4), "n": n}


def end_to_end(sess: Any, x: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    name = sess.get_inputs()[0].name
    stats = _timed(lambda: sess.run(None, {name: x}))
    return stats, np.asarray(sess.run(None, {name: x})[0])


def compute_only(sess: Any, x: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """IO binding: input copied to the device once, output written into a device buffer bound once."""
    binding = sess.io_binding()
    x_dev = ort.OrtValue.ortvalue_from_numpy(x, DEVICE, 0)
    out_meta = sess.get_outputs()[0]
    y_dev = ort.OrtValue.ortvalue_from_shape_and_type([len(x), 1000], np.float32, DEVICE, 0)
    binding.bind_ortvalue_input(sess.get_inputs()[0].name, x_dev)
    binding.bind_ortvalue_output(out_meta.name, y_dev)
    stats = _timed(lambda: sess.run_with_iobinding(binding))
    return stats, y_dev.numpy()


#: The converter's FP16 validation defaults (``validation.fp16Rtol`` / ``fp16Atol``): |got - TF| <= atol + rtol*|TF|.
FP16_RTOL, FP16_ATOL = 0.05, 0.1


def errors(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    diff = np.abs(got.astype(np.float64) - ref)
    return {
        "maxAbs": float(diff.max()),
        "maxRelToMax": float(diff.max() / np.abs(ref).max()),
        "top1": float(np.mean(np.argmax(got, 1) == np.argmax(ref, 1))),
        "outsideFp16Tolerance": int(np.sum(diff > FP16_ATOL + FP16_RTOL * np.abs(ref))),
    }


class Data:
    def __init__(self, root: Path) -> None:
        self.root = root
        with np.load(root / "images.npz") as d:
            self.x = (d["images"].astype(np.float32) / 127.5 - 1.0).astype(np.float32)
        self.refs: dict[str, np.ndarray] = {}
        for arch in ARCHS:
            if (root / arch / "ref.npz").exists():
                with np.load(root / arch / "ref.npz") as d:
                    self.refs[arch] = d["logits"]

    def model(self, arch: str, precision: str) -> Path:
        return self.root / arch / f"{precision}.onnx"


def _cell(sess: Any, x: np.ndarray, ref: np.ndarray, *, e2e: bool) -> dict[str, Any]:
    if CPU_SMOKE:
        x, ref = x[:2], ref[:2]
    row: dict[str, Any] = {}
    stats, y = compute_only(sess, x)
    row["compute"] = stats
    row["errors"] = errors(ref, y)
    if e2e:
        row["e2e"], _ = end_to_end(sess, x)
    return row


def sweep(data: Data, save: Any, result: dict[str, Any]) -> None:
    for precision in PRECISIONS:
        for variant, options in SWEEP.items():
            key = f"mobilenetv2/{precision}/{variant}"
            try:
                cells = {}
                for b in (1, 64):
                    sess = session(data.model("mobilenetv2", precision), options)  # graphs: one shape each
                    cells[f"b{b}"] = _cell(sess, data.x[:b], data.refs["mobilenetv2"][:b], e2e="graph" not in variant)
                    del sess
                result[key] = cells
            except Exception as exc:
                result[key] = {"error": str(exc).splitlines()[0][:300]}
            print(key, json.dumps(result[key])[:300], flush=True)
            save()


def _profile_summary(path: str) -> dict[str, Any]:
    events = json.loads(Path(path).read_text())
    by_op: Counter[str] = Counter()
    count: Counter[str] = Counter()
    runs = sum(1 for e in events if e.get("name") == "model_run") or 1
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            by_op[op] += int(e.get("dur", 0))
            count[op] += 1
    total = sum(by_op.values()) or 1
    return {
        "runs": runs,
        "nodeUsPerRun": round(total / runs, 1),
        "byOpType": [{"op": op, "share": round(us / total, 3), "calls": count[op]} for op, us in by_op.most_common(12)],
        "nodesPerRun": round(sum(count.values()) / runs, 1),
    }


def profile(data: Data, out: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for precision, variant in (("fp32", "default"), ("fp16", "default"), ("fp16", "nhwc"), ("int8", "nhwc")):
        prefix = str(out / f"prof-{precision}-{variant}")
        sess = session(data.model("mobilenetv2", precision), SWEEP[variant], profile=prefix)
        compute_only(sess, data.x[: 2 if CPU_SMOKE else 64])
        summary = _profile_summary(sess.end_profiling())
        result[f"mobilenetv2/{precision}/{variant}/b64"] = summary
        del sess
    return result


def table(data: Data, save: Any, rows: dict[str, Any]) -> None:
    for arch in ARCHS:
        if arch not in data.refs:
            continue
        for precision in PRECISIONS:
            for variant in TABLE_VARIANTS:
                if time.monotonic() - T0 > DEADLINE_S:
                    rows[f"{arch}/{precision}/{variant}"] = {"error": "skipped: out of time"}
                    continue
                key = f"{arch}/{precision}/{variant}"
                cells: dict[str, Any] = {}
                try:
                    sess = None if "graph" in variant else session(data.model(arch, precision), SWEEP[variant])
                    for b in BATCHES:
                        s = sess or session(data.model(arch, precision), SWEEP[variant])
                        cells[f"b{b}"] = _cell(s, data.x[:b], data.refs[arch][:b], e2e="graph" not in variant)
                except Exception as exc:
                    cells["error"] = str(exc).splitlines()[0][:300]
                rows[key] = cells
                print(key, json.dumps(cells)[:400], flush=True)
                save()


def main(argv: list[str]) -> int:
    data, out = Data(Path(argv[0])), Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    ort.preload_dlls()
    results: dict[str, Any] = {"onnxruntime": ort.__version__, "device": ort.get_device()}
    try:
        import torch  # only for the GPU's name, if the machine has it

        results["gpu"] = torch.cuda.get_device_name(0)
    except Exception:
        results["gpu"] = None

    def save() -> None:
        results["seconds"] = round(time.monotonic() - T0, 1)
        (out / "gpu_ort.json").write_text(json.dumps(results, indent=1))

    if not TABLE_ONLY:
        results["sweep"] = {}
        sweep(data, save, results["sweep"])
        results["profile"] = profile(data, out)
        save()
    results["table"] = {}
    table(data, save, results["table"])
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
