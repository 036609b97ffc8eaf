"""Real TensorFlow models and Artifacts for the Triton tests.

The end-to-end tests convert the samples with the real converter
(``tests/triton/cases.py``); the helpers here build Artifacts straight from
small SavedModels (what the converter hands over) for the tests about
publishing and serving semantics: versions, batching, config variants.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.artifact import Artifact, TensorInfo

TF_TO_TRITON = {
    "float32": "FP32",
    "float16": "FP16",
    "float64": "FP64",
    "int8": "INT8",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "bool": "BOOL",
    "string": "BYTES",
}


def tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow

    return tensorflow


def artifact_from_savedmodel(path: Path, signature_key: str = "serving_default", **kw: Any) -> Artifact:
    """Read the SavedModel's real signature, exactly as a converter would report it."""
    t = tf()
    loaded = t.saved_model.load(str(path))
    fn = loaded.signatures[signature_key]
    inputs = [
        TensorInfo(name, TF_TO_TRITON[spec.dtype.name], [-1 if d is None else int(d) for d in spec.shape.as_list()])
        for name, spec in sorted(fn.structured_input_signature[1].items())
    ]
    outputs = [
        TensorInfo(name, TF_TO_TRITON[spec.dtype.name], [-1 if d is None else int(d) for d in spec.shape.as_list()])
        for name, spec in sorted(fn.structured_outputs.items())
    ]
    return Artifact(savedmodel_dir=Path(path), signature_key=signature_key, inputs=inputs, outputs=outputs, **kw)


def run_savedmodel(path: Path, feed: dict[str, np.ndarray], signature_key: str = "serving_default") -> dict[str, Any]:
    t = tf()
    fn = t.saved_model.load(str(path)).signatures[signature_key]
    return {k: v.numpy() for k, v in fn(**{k: t.constant(v) for k, v in feed.items()}).items()}


def write_add_savedmodel(path: Path, a: float = 5.0, *, shape: list[int | None] | None = None) -> Path:
    """y = a + x as a tf.Module SavedModel (a versioned stand-in: change ``a`` to tell versions apart)."""
    t = tf()

    class Add(t.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = t.Variable(a, dtype=t.float32)

        @t.function(input_signature=[t.TensorSpec(shape if shape is not None else [None, 1], t.float32, name="x")])
        def serve(self, x: Any) -> dict[str, Any]:
            return {"y": x + self.a}

    module = Add()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def write_multi_io_savedmodel(path: Path) -> Path:
    """Two inputs of different dtypes, two outputs, a variable inner dim: configs Triton must accept."""
    t = tf()

    class Multi(t.Module):
        @t.function(
            input_signature=[
                t.TensorSpec([None, 3], t.float32, name="features"),
                t.TensorSpec([None, None], t.int64, name="ids"),
            ]
        )
        def serve(self, features: Any, ids: Any) -> dict[str, Any]:
            return {
                "scaled": features * 2.0,
                "id_sum": t.reduce_sum(ids, axis=1, keepdims=True),
            }

    module = Multi()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def run_checkpoint(meta: Path, checkpoint: Path, feed: dict[str, np.ndarray], fetch: list[str]) -> list[np.ndarray]:
    """Run the original TF1 graph from its checkpoint: the ground truth the served model must match."""
    t = tf()
    graph = t.Graph()
    with graph.as_default(), t.compat.v1.Session(graph=graph) as sess:
        saver = t.compat.v1.train.import_meta_graph(str(meta))
        saver.restore(sess, str(checkpoint))
        return list(sess.run(fetch, {graph.get_tensor_by_name(k): v for k, v in feed.items()}))


def run_frozen_graph(pb: Path, feed: dict[str, np.ndarray], fetch: list[str]) -> list[np.ndarray]:
    t = tf()
    graph_def = t.compat.v1.GraphDef()
    graph_def.ParseFromString(pb.read_bytes())
    graph = t.Graph()
    with graph.as_default(), t.compat.v1.Session(graph=graph) as sess:
        t.compat.v1.import_graph_def(graph_def, name="")
        return list(sess.run(fetch, {graph.get_tensor_by_name(k): v for k, v in feed.items()}))


def write_checked_sqrt_savedmodel(path: Path) -> Path:
    """y = sqrt(x) that refuses negative input at run time: a request that fails inside the model."""
    t = tf()

    class CheckedSqrt(t.Module):
        @t.function(input_signature=[t.TensorSpec([None, 2], t.float32, name="x")])
        def serve(self, x: Any) -> dict[str, Any]:
            with t.control_dependencies([t.debugging.assert_non_negative(x, message="x must be >= 0")]):
                return {"y": t.sqrt(x)}

    module = CheckedSqrt()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def write_string_savedmodel(path: Path) -> Path:
    """Upper-cases strings: BYTES in, BYTES out (no warmup possible for strings)."""
    t = tf()

    class Upper(t.Module):
        @t.function(input_signature=[t.TensorSpec([None, 1], t.string, name="text")])
        def serve(self, text: Any) -> dict[str, Any]:
            return {"upper": t.strings.upper(text), "length": t.strings.length(text)}

    module = Upper()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path
