"""TensorFlow dtype names ↔ Triton dtypes ↔ numpy, without importing TensorFlow.

Triton's config.pbtxt and the Artifact speak Triton dtypes (``FP32``); the
spec uses the same names (with ``STRING`` for text, which Triton calls
``BYTES``).  Keeping the table TF-free lets the pure TRT-planning code and
its unit tests use it.
"""

from __future__ import annotations

from edgeopt.errors import InputError

#: TensorFlow dtype name (``tf.DType.name``) → Triton dtype.
TF_TO_TRITON: dict[str, str] = {
    "float32": "FP32",
    "float16": "FP16",
    "float64": "FP64",
    "bfloat16": "BF16",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "bool": "BOOL",
    "string": "BYTES",
}

#: Triton/spec dtype → numpy dtype name (for feeding inputs).
TRITON_TO_NUMPY: dict[str, str] = {
    "FP32": "float32",
    "FP16": "float16",
    "FP64": "float64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "BOOL": "bool",
    "BYTES": "object",
    "STRING": "object",
}


def triton_dtype(tf_name: str) -> str:
    """Triton dtype for a TensorFlow dtype name; resource/variant tensors cannot be served."""
    try:
        return TF_TO_TRITON[tf_name]
    except KeyError:
        raise InputError(f"tensors of dtype {tf_name} cannot be served by Triton") from None


def spec_dtype_matches(spec_dtype: str, triton: str) -> bool:
    """The spec says STRING where Triton says BYTES; everything else is spelled the same."""
    return spec_dtype == triton or (spec_dtype == "STRING" and triton == "BYTES")


def numpy_dtype(triton: str) -> str:
    return TRITON_TO_NUMPY[triton]
