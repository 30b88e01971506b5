"""The op registry. Importing this package registers every op once."""

from archviz.ops import activation, conv, linear, norm, opaque, pool, structure, tensor  # noqa: F401  (registration)
from archviz.ops.base import Arg, ArgKind, Op, OpKind, Shape, Step, Window
from archviz.ops.registry import all_names, all_ops, canonical_name, get_op, has_formula

__all__ = [
    "Arg", "ArgKind", "Op", "OpKind", "Shape", "Step", "Window", "all_names", "all_ops", "canonical_name", "get_op", "has_formula",
]
