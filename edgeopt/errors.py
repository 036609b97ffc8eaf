"""One root error and its kinds.

Both the CLI (exit codes, one clear paragraph) and the operator (condition
reasons) read ``exit_code`` and ``reason`` from these, so a failure means the
same thing on a laptop and in the cluster.
"""

from __future__ import annotations


class EdgeoptError(Exception):
    """Root of every error edgeopt raises on purpose."""

    exit_code = 1
    reason = "Error"


class SpecError(EdgeoptError):
    """The manifest is malformed or a field is out of range. Fix the YAML."""

    exit_code = 2
    reason = "InvalidSpec"


class InputError(EdgeoptError):
    """The model the spec points at is missing, unreadable or does not match the spec."""

    exit_code = 3
    reason = "InvalidInput"


class ConversionError(EdgeoptError):
    """Freezing, optimizing or TF-TRT conversion failed."""

    exit_code = 4
    reason = "ConversionFailed"


class TensorRTUnavailableError(ConversionError):
    """The spec asks for TF-TRT, but this TensorFlow was not built with TensorRT."""

    exit_code = 5
    reason = "TensorRTUnavailable"


class ValidationError(EdgeoptError):
    """The converted model does not answer like the original within tolerance."""

    exit_code = 6
    reason = "ValidationFailed"


class PublishError(EdgeoptError):
    """The model repository could not be written, or a name is unsafe."""

    exit_code = 7
    reason = "PublishFailed"


class ServingError(EdgeoptError):
    """Triton could not be reached, or would not load or answer the model."""

    exit_code = 8
    reason = "ServingFailed"
