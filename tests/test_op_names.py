"""One op, one entry: no module outside archviz/ops/ names an op by string.

Code outside the registry asks the op (its kind, `pointwise`, `draws_kernels`, `merges_positions`, ...) or refers to
its class (`Flatten.name`); a string "conv2d" compared with node.op elsewhere is a fact about conv2d living outside
its entry, which the next op of the family silently misses. The scan reads every module's syntax tree: a registered
op's name anywhere in a string constant, or an alias of one compared with something or handed to get_op, is
reported, except the words below, which mean something else where they stand.
"""

from __future__ import annotations

import ast
from pathlib import Path

from archviz.ops import all_names, all_ops

PACKAGE = Path(__file__).resolve().parent.parent / "archviz"
LOOKUPS = {"get_op", "canonical_name", "has_formula", "made"}

# (module, word): why the word is not an op's name there.
OTHER_MEANINGS = {
    ("crosscheck/fvcore_peer.py", "linear"): "fvcore's name for its linear handle (MAC_OPS)",
    ("crosscheck/fvcore_peer.py", "matmul"): "fvcore's name for its matmul handle (MAC_OPS)",
    ("crosscheck/fvcore_peer.py", "einsum"): "fvcore's name for its einsum handle (MAC_OPS)",
    ("crosscheck/fvcore_peer.py", "adaptive_avg_pool2d"): "fvcore's name for its adaptive pooling handle",
    ("pretrain/choices.py", "linear"): "the linear probe (ProbeKind.LINEAR)",
    ("spec/model.py", "add"): "the spec grammar's join head `add: [branches]` (graph/build.py)",
    ("spec/model.py", "concat"): "the spec grammar's join head `concat: [branches]` (graph/build.py)",
}


def _strings(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node
    elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        for element in node.elts:
            yield from _strings(element)


def _called(node: ast.Call) -> str:
    return node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")


def op_names_in(source: str) -> list[tuple[int, str]]:
    """(line, word) of each op named by string in the source (see the module docstring)."""
    names = {op.name for op in all_ops()}
    every = set(all_names())
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.Compare):
            found += [(s.lineno, s.value) for part in (node.left, *node.comparators) for s in _strings(part)
                      if s.value in every and s.value not in names]
        elif isinstance(node, ast.Call) and _called(node) in LOOKUPS:
            found += [(s.lineno, s.value) for arg in node.args for s in _strings(arg)
                      if s.value in every and s.value not in names]
    return sorted(set(found))


def test_no_module_outside_the_registry_names_an_op():
    reported = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module.startswith("ops/"):
            continue
        for line, word in op_names_in(path.read_text(encoding="utf-8")):
            if (module, word) not in OTHER_MEANINGS:
                reported.append(f"archviz/{module}:{line}: {word!r}")
    assert not reported, "ops named by string outside archviz/ops/ (ask the op instead):\n" + "\n".join(reported)


def test_every_stated_other_meaning_is_still_there():
    """A word listed as meaning something else, that the module no longer has, is dropped from the list."""
    for module, word in OTHER_MEANINGS:
        assert word in {w for _, w in op_names_in((PACKAGE / module).read_text(encoding="utf-8"))}, (module, word)


def test_the_scan_finds_the_comparisons_it_is_for():
    source = '''
if node.op == "conv2d":
    pass
kernels = [n for n in nodes if n.op in ("batchnorm2d", "bn")]
op = get_op("gap")
style = {"relu": "dim"}
'''
    assert op_names_in(source) == [(2, "conv2d"), (4, "batchnorm2d"), (4, "bn"), (5, "gap"), (6, "relu")]
