"""Shared set-up for the Triton tests: the sample models, written once per session."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The three real sample models (y = a + x checkpoint, conv+BN graph, Keras SavedModel)."""
    from edgeopt_dev import samples as s

    root = tmp_path_factory.mktemp("samples")
    return {
        "add": s.write_add_checkpoint(root / "add"),
        "convbn": s.write_conv_bn_graph(root / "convbn", checkpoint=False),
        "keras": s.write_keras_model(root / "keras", "savedmodel", input_size=16),
    }
