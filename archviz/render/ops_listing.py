"""`archviz ops`: the op registry as plain text, read from the entries themselves, so a new op documents itself.

`archviz ops` lists every op with its kind, torch module and first docstring line; `archviz ops NAME` shows one entry:
its formulas (the docstring, with their sources), its arguments, what it matches when tracing and reads from ONNX,
and how many examples the registry-wide test holds it to.
"""

from __future__ import annotations

from archviz.errors import UnknownNameError, closest
from archviz.ops import all_names, all_ops, canonical_name, get_op
from archviz.ops.base import Arg, Op

HEADERS = ("Op", "Kind", "Torch", "What it computes")
MIN_TEXT = 20  # narrower than this and the description is dropped rather than cut to a stub


def ops_listing(*, width: int) -> str:
    """Every op, one line each, at most width columns wide.

    >>> ops_listing(width=100).splitlines()[1].split()[:3]
    ['relu', 'activation', 'nn.ReLU']
    """
    rows = [(op.name, op.kind.value, op.torch_class, _first_sentence(op.doc)) for op in all_ops()]
    widths = [max(len(HEADERS[i]), *(len(row[i]) for row in rows)) for i in range(3)]
    room = width - sum(widths) - 2 * 3
    lines = []
    for cells in [HEADERS, *rows]:
        text = "  ".join(cell.ljust(w) for cell, w in zip(cells[:3], widths))
        if room >= MIN_TEXT:
            text += "  " + (cells[3] if len(cells[3]) <= room else cells[3][:room - 1] + "…")
        lines.append(text.rstrip())
    return "\n".join(lines) + "\n\n`archviz ops NAME` shows one op's formulas, arguments and matches.\n"


def op_entry(name: str) -> str:
    """One op's entry: formulas, arguments, torch and ONNX matches.

    >>> op_entry("fc").splitlines()[0]
    'linear (aliases: dense, fc): kind linear, torch nn.Linear'
    """
    key = canonical_name(name)
    if key is None:
        raise UnknownNameError(f"unknown op {name!r}{closest(name, all_names())}; `archviz ops` lists them")
    op = get_op(key)
    aliases = f" (aliases: {', '.join(op.aliases)})" if op.aliases else ""
    lines = [f"{op.name}{aliases}: kind {op.kind.value}, torch {op.torch_class}", "", op.doc, ""]
    if op.args:
        lines.append("Arguments (name, aliases, default):")
        width = max(len(arg.name) for arg in op.args)
        lines += [f"  {arg.name.ljust(width)}  {_default(arg)}{_aliases(arg)}{_doc(arg)}" for arg in op.args]
        lines.append("")
    lines += _matches(op)
    lines += _memory(op)
    lines.append(f"Held to torch at {len(op.examples)} example(s) by tests/test_op_registry.py.")
    return "\n".join(lines) + "\n"


def _memory(op: Op) -> list[str]:
    """What training keeps of it, at its first example (the shapes matter: a max pool's indices are its output's)."""
    if not op.examples:
        return []
    from archviz.graph.make import made

    layer = made(op, op.examples[0].args, op.examples[0].inputs)
    saved = op.saved(layer.attrs, list(layer.in_shapes), layer.out_shape)
    if saved is None:
        return ["Training: what it keeps for backward is not known (no formula)."]
    kept = [f"input {i}" if len(layer.in_shapes) > 1 else "its input" for i in saved.inputs]
    kept += ["its output"] * saved.output
    kept += [f"{k.elements:,} more element(s) {'per image' if k.per_sample else 'per pass'}"
             + (f" ({k.itemsize} bytes each)" if k.itemsize else "") for k in saved.made]
    example = " x ".join("x".join(map(str, shape)) for shape in layer.in_shapes)
    lines = [f"Training: autograd keeps {', '.join(kept) if kept else 'nothing'} for backward (at {example})."]
    if op.returns_view:
        lines.append("Its output is a view of its input: no new memory.")
    if op.autocasts:
        lines.append("Under torch.autocast it runs in bf16 or fp16, from 2-byte copies of its inputs and weights.")
    return lines


def _matches(op: Op) -> list[str]:
    calls = op.torch_calls
    traced = [*calls.modules, *calls.functions, *calls.pieces]
    lines = []
    if traced:
        lines.append("Matches when tracing: " + ", ".join(traced))
    if op.onnx_reads:
        lines.append("Reads from ONNX: " + ", ".join(op.onnx_reads))
    return lines


def _default(arg: Arg) -> str:
    if arg.required:
        return "required"
    if arg.default is None:
        return "=null"
    value = str(arg.default).lower() if isinstance(arg.default, bool) else arg.default
    return f"={value}"


def _aliases(arg: Arg) -> str:
    return f" ({', '.join(arg.aliases)})" if arg.aliases else ""


def _doc(arg: Arg) -> str:
    return f": {arg.doc}" if arg.doc else ""


def _first_sentence(text: str) -> str:
    first = text.split("\n\n")[0].replace("\n", " ")
    return first.split(". ")[0].rstrip(".") + "."
