"""The named graph transforms of ``spec.optimize.transforms``, one concept per module.

The names are TensorFlow's transform_graph names (the seed guide's list);
``remove_identity``/``remove_check_numerics`` are the two halves of
``remove_nodes(op=Identity, op=CheckNumerics)``, kept for existing specs.
Importing this package imports TensorFlow: only the converter does.
"""

from __future__ import annotations

from edgeopt.converter.transforms.attributes import add_default_attributes
from edgeopt.converter.transforms.batch_norms import fold_batch_norms, fold_old_batch_norms
from edgeopt.converter.transforms.fold_constants import fold_constants
from edgeopt.converter.transforms.graph import StepResult, Transform
from edgeopt.converter.transforms.quantize import quantize_weights
from edgeopt.converter.transforms.remove_nodes import remove_check_numerics, remove_identity, remove_nodes
from edgeopt.converter.transforms.resize_conv import fuse_resize_and_conv
from edgeopt.converter.transforms.structure import sort_by_execution_order, strip_unused_nodes

REGISTRY: dict[str, Transform] = {
    "add_default_attributes": add_default_attributes,
    "remove_nodes": remove_nodes,
    "remove_identity": remove_identity,
    "remove_check_numerics": remove_check_numerics,
    "fold_constants": fold_constants,
    "fold_batch_norms": fold_batch_norms,
    "fold_old_batch_norms": fold_old_batch_norms,
    "fuse_resize_and_conv": fuse_resize_and_conv,
    "quantize_weights": quantize_weights,
    "strip_unused_nodes": strip_unused_nodes,
    "sort_by_execution_order": sort_by_execution_order,
}

__all__ = ["REGISTRY", "StepResult", "Transform"]
