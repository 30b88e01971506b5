"""The op registry. Importing this package registers every op once."""

from archviz.ops import (  # noqa: F401  (registration, in this order: archviz ops lists them so)
    activation, conv, elementwise, linear, matmul, norm, opaque, pool, resample, structure, tensor,
)
from archviz.ops.base import Arg, ArgKind, Op, OpKind, Shape, Step, Window
from archviz.ops.registry import all_names, all_ops, canonical_name, get_op, has_formula

__all__ = [
    "Arg", "ArgKind", "Op", "OpKind", "Shape", "Step", "Window", "all_names", "all_ops", "canonical_name", "get_op", "has_formula",
]
