"""The seed-workflow fields through ``kubectl apply``: constants, xla, the guide's transform names.

The CRD's CEL rules must refuse what spec.py refuses, with the same advice,
at apply time; and what spec.py accepts must apply.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.operator.support import Kubectl, apply, example

pytestmark = pytest.mark.apiserver

GUIDE_LIST = [
    "add_default_attributes",
    "remove_nodes",
    "fold_constants",
    "fold_batch_norms",
    "fold_old_batch_norms",
    "fuse_resize_and_conv",
    "quantize_weights",
    "strip_unused_nodes",
    "sort_by_execution_order",
]


@pytest.fixture
def ns(namespace: str, om_crd: None) -> str:
    return namespace


def test_constants_xla_and_the_guide_list_apply(kubectl: Kubectl, ns: str) -> None:
    doc = example(
        name="guide",
        source={"constants": {"keep_prob": 1.0, "phase_train": False, "mean": [0.5, 0.5, 0.5]}},
        xla={"jit": True},
        optimize={"transforms": GUIDE_LIST},
    )
    proc = apply(kubectl, ns, doc, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"xla": {"jit": True}, "tensorrt": {"enabled": True}}, "xla.jit and tensorrt.enabled are alternatives"),
        ({"optimize": {"transforms": ["fold_constants", "quantize_nodes"]}}, "quantize_nodes (TF1's 8-bit op rewrite)"),
        ({"optimize": {"transforms": ["fold_everything"]}}, 'Unsupported value: "fold_everything"'),
        (
            {"source": {"format": "SavedModel", "constants": {"keep_prob": 1.0}}},
            "constants binds graph placeholders",
        ),
    ],
    ids=["xla-with-trt", "quantize-nodes", "unknown-transform", "constants-savedmodel"],
)
def test_apply_rejects(kubectl: Kubectl, ns: str, spec: dict[str, Any], message: str) -> None:
    doc = example(name="bad", **spec)
    proc = apply(kubectl, ns, doc, check=False)
    assert proc.returncode != 0, f"accepted: {doc['spec']}"
    assert message in proc.stderr, proc.stderr
