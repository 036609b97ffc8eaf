"""The ONNX path's CEL rules, checked by the real kube-apiserver: a bad spec fails at ``kubectl apply``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.operator.support import Kubectl, apply, example

pytestmark = pytest.mark.apiserver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ns(namespace: str, om_crd: None) -> str:
    return namespace


@pytest.mark.parametrize(
    ("target", "tensorrt", "onnx", "message"),
    [
        (
            {"backend": "onnxruntime", "device": "CPU"},
            {"enabled": False, "precision": "INT8"},
            {},
            "ONNX INT8 needs calibration data",
        ),
        (
            {"backend": "python", "device": "CPU"},
            {"enabled": False, "precision": "INT8"},
            {"enabled": True},
            "ONNX INT8 needs calibration data",
        ),
        ({"backend": "tensorrt", "device": "CPU"}, {"enabled": True}, {}, "runs only on GPU"),
        ({"backend": "onnxruntime", "device": "CPU"}, {"enabled": True}, {}, "the TensorRT accelerator exists only"),
        ({"backend": "onnxruntime", "device": "TPU"}, {"enabled": False}, {}, 'Unsupported value: "TPU"'),
        ({"backend": "onnxruntime"}, {"enabled": False}, {"opset": 19}, "spec.onnx.opset in body should be less"),
        ({"backend": "onnxruntime"}, {"enabled": False}, {"calibrationMethod": "KL"}, 'Unsupported value: "KL"'),
    ],
    ids=["int8-no-calibration", "python-onnx-int8", "plan-on-cpu", "accelerator-on-cpu", "device", "opset", "method"],
)
def test_apply_rejects_onnx_specs(
    kubectl: Kubectl, ns: str, target: dict[str, Any], tensorrt: dict[str, Any], onnx: dict[str, Any], message: str
) -> None:
    doc = example(name="bad-onnx", target=target, tensorrt=tensorrt, onnx=onnx)
    proc = apply(kubectl, ns, doc, check=False)
    assert proc.returncode != 0, f"accepted: {doc['spec']}"
    assert message in proc.stderr, proc.stderr


def test_cpu_int8_with_calibration_is_accepted(kubectl: Kubectl, ns: str) -> None:
    doc = example(
        name="cpu-int8",
        target={"backend": "onnxruntime", "device": "CPU"},
        tensorrt={"enabled": False, "precision": "INT8", "calibration": {"uri": "pvc://models/cal.npz"}},
    )
    assert apply(kubectl, ns, doc, check=False).returncode == 0


@pytest.mark.parametrize("name", ["mobilenet-v2-onnx-fp16-gpu.yaml", "convbn-onnx-int8-cpu.yaml"])
def test_onnx_examples_apply(kubectl: Kubectl, ns: str, name: str) -> None:
    proc = kubectl("apply", "--dry-run=server", "-n", ns, "-f", str(ROOT / "examples" / name), check=False)
    assert proc.returncode == 0, proc.stderr
