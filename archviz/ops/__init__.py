"""The op registry. Importing this package registers every op once.

One op is one class (an `Op` subclass, registered with `@register`) in its family's module, and it owns every fact
archviz knows about the op; nothing outside this package names an op by string (tests/test_op_names.py):
  * arguments (`args`: torch's names, aliases, defaults; `resolve` checks them against the input shapes);
  * `infer_shape`, `weights()` (each stored tensor: name, shape, trained or kept, torch's fill; params and buffers
    are their sizes), `macs`, `other_ops`, `window` (for receptive fields), `explain` and `summary`;
  * `build_torch` (torch imported inside: importing the registry imports neither torch nor numpy);
  * `torch_calls`: the module classes, functions and tensor methods it matches when a model is traced, by dotted
    path, with adapters (archviz/ops/interop.py; archviz/trace/mapping.py resolves them);
  * `write_onnx` and `onnx_reads`: how it is written to and read from ONNX (archviz/onnx/export.py's emitter and
    archviz/onnx/convert.py's NodeReader);
  * `examples`: the arguments and input shapes tests/test_op_registry.py holds every fact above to, against torch.
No fact has a default: the shape, window, costs, explanation and ONNX writer are abstract, and an op names the
declaration it makes (`SameShape`, `NoWindow`, `NoMacs`, `Free` in base.py), so a forgotten fact fails at import.
Adding an op is one class and its examples (see `PixelUnshuffle` in tensor.py).
"""

from archviz.ops import (  # noqa: F401  (registration, in this order: archviz ops lists them so)
    activation, conv, elementwise, lenet, linear, matmul, norm, opaque, pool, resample, structure, tensor,
)
from archviz.ops.base import Arg, ArgKind, Op, OpKind, Shape, Step, Window
from archviz.ops.registry import all_names, all_ops, canonical_name, get_op, has_formula

__all__ = [
    "Arg", "ArgKind", "Op", "OpKind", "Shape", "Step", "Window", "all_names", "all_ops", "canonical_name", "get_op",
    "has_formula",
]
