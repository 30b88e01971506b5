"""read_onnx(): an ONNX file as the same frozen Graph a spec produces, so every later stage works on it unchanged.

The file is read with the `onnx` package (weights kept in external data files are not loaded: only their shapes
count), checked, and its shapes inferred by onnx.shape_inference with the image input fixed (batch 1 where it is
dynamic, --input where given), the shape arithmetic folded into constants on the way (archviz/onnx/fold.py).
archviz/onnx/convert.py then maps each node to a registry op. Sources: the ONNX operator specification
(onnx.ai/onnx/operators) and IR (onnx.ai/onnx/repo-docs/IR.html).
"""

from __future__ import annotations

from pathlib import Path

from archviz.errors import MissingDependencyError, SpecError
from archviz.graph.ir import Graph

MIN_OPSET = 7  # older opsets differ in BatchNormalization, Dropout and Clip; onnx's version converter lifts them
MAX_KEPT_ELEMENTS = 1024  # larger initializers are weights: only their shapes are read (VGG16: 12 s -> 2 s)
INSTALL_HINT = "pip install 'archviz[onnx]'"


def import_onnx():
    """The onnx package, or a MissingDependencyError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError(f"reading and writing ONNX files needs the onnx package: {INSTALL_HINT}") from None
    return onnx


def read_onnx(path: str | Path, input=None) -> Graph:
    """The ONNX model at path as a validated Graph; `input` (CxHxW, as "3x224x224" or a tuple) fixes a dynamic or
    missing image shape, or replaces the file's.

    >>> import tempfile, archviz
    >>> from archviz.onnx.export import export_onnx
    >>> path = export_onnx(archviz.load("lenet"), tempfile.mkdtemp() + "/lenet.onnx")
    >>> read_onnx(path).node("conv1").out_shape
    (6, 28, 28)
    """
    onnx = import_onnx()
    from archviz.onnx.convert import convert

    file = str(path)
    model = _load(onnx, Path(path), file)
    opset = _opset(model, file)
    weight_inputs = _weight_inputs(model, _set_weights_aside(model))
    image = _image_input(model, weight_inputs, file)
    shape = _fix_input(model, image, input, file)
    _check(onnx, model, file)
    from archviz.onnx.fold import fold_shapes
    from archviz.onnx.model import view

    model = fold_shapes(model, lambda unfolded: _infer_shapes(onnx, unfolded, file))

    return convert(view(model, opset, image.name, weight_inputs), name=Path(path).stem, file=file,
                   input_shape=shape, description=_description(model, Path(path).name, opset))


def _load(onnx, path: Path, file: str):
    from google.protobuf.message import DecodeError

    if not path.is_file():
        raise SpecError("no such ONNX file" if not path.exists() else "not a file", file=file)
    try:
        model = onnx.load(path, load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as error:
        raise SpecError(f"not an ONNX model (the protobuf does not parse: {_first_line(error)})", file=file) from None
    if not model.ir_version or not model.graph.node:
        raise SpecError("not an ONNX model (no IR version or no nodes in its graph)", file=file)
    return model


def _set_weights_aside(model) -> set[str]:
    """Turn the large initializers (and those in external files) into graph inputs of their shape, and return
    their names: checking and shape inference then copy kilobytes, not the weights."""
    from onnx import TensorProto, helper

    declared = {info.name for info in model.graph.input}
    moved: dict[int, str] = {}
    for index, tensor in enumerate(model.graph.initializer):
        size = 1
        for dim in tensor.dims:
            size *= dim
        if size > MAX_KEPT_ELEMENTS or tensor.data_location == TensorProto.EXTERNAL:
            moved[index] = tensor.name
            if tensor.name not in declared:
                info = helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
                model.graph.input.append(info)
    for index in sorted(moved, reverse=True):
        del model.graph.initializer[index]
    return set(moved.values())


def _check(onnx, model, file: str) -> None:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise SpecError(f"not a valid ONNX model: {_first_line(error)}", file=file) from None


def _opset(model, file: str) -> int:
    import onnx.defs

    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise SpecError("the model imports no version of the standard ONNX operators (opset_import)", file=file)
    opset, newest = max(versions), onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise SpecError(f"opset {opset} is not supported: archviz reads opsets {MIN_OPSET} to {newest} (convert the "
                        "model with onnx.version_converter.convert_version(model, 17))", file=file)
    return opset


def _weight_inputs(model, set_aside: set[str]) -> set[str]:
    """Graph inputs that hold weights: initializers set aside or listed as inputs too (IR < 4); inputs read only
    where ops take weights, or named like a state-dict entry (archviz/onnx/model.py); and, when one input has the
    highest rank, the others of lower rank and fixed shape (a file saved without its weights, where a layer scale
    of C x 1 x 1 sits beside the N x C x H x W image)."""
    from archviz.onnx.model import WEIGHT_NAME_SUFFIXES, WEIGHT_POSITIONS

    initializers = {tensor.name for tensor in model.graph.initializer} | set_aside
    uses: dict[str, list[tuple[str, int]]] = {}
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            uses.setdefault(name, []).append((node.op_type, index))

    def is_weight(name: str) -> bool:
        if name in initializers:
            return True
        if not uses.get(name):
            return False
        if all(index in WEIGHT_POSITIONS.get(op_type, ()) for op_type, index in uses[name]):
            return True
        return name.endswith(WEIGHT_NAME_SUFFIXES)

    weights = {info.name for info in model.graph.input if is_weight(info.name)}
    others = [info for info in model.graph.input if info.name not in weights]
    ranks = {info.name: len(info.type.tensor_type.shape.dim) for info in others}
    top = [info for info in others if ranks[info.name] == max(ranks.values(), default=0)]
    if len(top) == 1:
        weights.update(info.name for info in others if info is not top[0] and _fixed(info))
    return weights


def _fixed(info) -> bool:
    dims = info.type.tensor_type.shape.dim
    return bool(dims) and all(d.HasField("dim_value") and d.dim_value > 0 for d in dims)


def _image_input(model, weight_inputs: set[str], file: str):
    images = [info for info in model.graph.input if info.name not in weight_inputs]
    if not images:
        raise SpecError("the model has no input (every graph input is a weight)", file=file)
    if len(images) > 1:
        names = ", ".join(repr(info.name) for info in images)
        raise SpecError(f"the model has {len(images)} inputs ({names}); archviz reads models with one image input",
                        file=file)
    return images[0]


def _fix_input(model, image, given, file: str) -> tuple[int, ...]:
    """Set the image input's dims in the model (batch 1 where dynamic) and return its shape without the batch."""
    from archviz.graph.build import parse_input

    tensor_type = image.type.tensor_type
    if not image.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
        if given is None:
            raise SpecError(f"input {image.name!r} has no shape in the file; pass --input CxHxW", file=file)
        rank = None
    else:
        rank = len(tensor_type.shape.dim)
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor_type.shape.dim]
    if given is not None:
        shape = parse_input(given)
        if rank is not None and len(shape) != rank - 1:
            raise SpecError(f"--input {given!r} has {len(shape)} dims but input {image.name!r} has {rank - 1} after "
                            "the batch", file=file)
        batch = dims[0] if dims and dims[0] else 1
        _clear_shapes(model)  # shapes stored for another input size would contradict the new ones
    else:
        if rank is None or rank < 2:
            raise SpecError(f"input {image.name!r} has shape {_text(dims)}; archviz needs a batch dim and at least "
                            "one more", file=file)
        if None in dims[1:]:
            raise SpecError(f"input {image.name!r} has a dynamic shape {_text(dims)}; pass --input CxHxW", file=file)
        batch, shape = dims[0] or 1, tuple(dims[1:])
    tensor_type.ClearField("shape")
    for size in (batch, *shape):
        tensor_type.shape.dim.add().dim_value = size
    return tuple(shape)


def _clear_shapes(model) -> None:
    """Forget the stored intermediate shapes, and the outputs' sizes (not their ranks, which the checker wants)."""
    del model.graph.value_info[:]
    for info in model.graph.output:
        if info.type.HasField("tensor_type") and info.type.tensor_type.HasField("shape"):
            for dim in info.type.tensor_type.shape.dim:
                dim.Clear()


def _infer_shapes(onnx, model, file: str):
    """Shapes inferred strictly; where that fails (an op without an inference rule), as far as inference gets."""
    errors = (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError)
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except errors:
        pass
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except errors as error:
        raise SpecError(f"ONNX shape inference fails: {_first_line(error)}", file=file) from None


def _description(model, filename: str, opset: int) -> str:
    producer = " ".join(p for p in (model.producer_name, model.producer_version) if p)
    text = model.doc_string.strip() or model.graph.doc_string.strip()
    origin = f"ONNX file {filename}, opset {opset}" + (f", from {producer}" if producer else "")
    return f"{text} ({origin})" if text else origin


def _text(dims) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."

