"""Running a SavedModel's serving signature on random inputs, for the latency comparisons.

Both sides of every comparison go through this same code (load, signature
function, ``tf.constant`` in, ``.numpy()`` out), so the ratio measures the
models, not the harness.  TensorFlow is imported inside the functions: the
unit tests import the bench package without it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIGNATURE = "serving_default"


def load_runner(path: Path, batch: int, *, seed: int = 0) -> tuple[Callable[[], Any], dict[str, Any], Any]:
    """(run, inputs, keep_alive): ``run()`` calls the signature once on fixed random inputs of ``batch``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    obj = tf.saved_model.load(str(path))
    fn = obj.signatures[SIGNATURE]
    specs = fn.structured_input_signature[1]
    rng = np.random.default_rng(seed)
    inputs = {}
    for key, spec in sorted(specs.items()):
        dims = spec.shape.as_list() if spec.shape.rank is not None else [None]
        shape = [batch if i == 0 and d is None else (1 if d is None else int(d)) for i, d in enumerate(dims)]
        inputs[key] = rng.standard_normal(shape).astype(spec.dtype.as_numpy_dtype)

    def run() -> Any:
        result = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in result.items()}

    return run, inputs, obj
