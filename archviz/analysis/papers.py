"""A model held against the figures its source published (`archviz paper MODEL`): each figure of the spec's
`published:` section (archviz/spec/published.py) beside archviz's own, with a verdict and, where they differ, the
reason in words and the arithmetic that shows it.

The verdict reads the printed figure's rounding from its digits: "3.8 x 10^9" covers 3.75 to 3.85 x 10^9. A
reason is never a guess: where the source's "FLOPs" are multiply-adds, the row says what archviz's FLOPs (2 x MACs)
would be; where a figure belongs to another build (`compare:`: the paper's ResNet v1, Inception v3 with its
auxiliary head), that build is computed beside it; where the source counts the convolutions alone or archviz's
weight memory holds buffers the source leaves out, the count without them is shown with its own verdict.
"""

from __future__ import annotations

import enum
import shlex
from dataclasses import dataclass
from fractions import Fraction

from archviz.analysis.explain import explain_group, find_group
from archviz.analysis.report import LayerStats, Report
from archviz.errors import SpecError, UnknownNameError, closest
from archviz.format import exact, human, size_bytes
from archviz.ops import OpKind, get_op
from archviz.spec.published import Only, PrintedValue, Published, Quantity

FLOAT32_BYTES = 4  # weight memory as torchinfo's "Params size (MB)" states it: float32
FLOP_WORDS = ("flops", "gflops", "flop", "ops", "multiply-adds", "mult-adds")  # what sources call MACs


class Verdict(enum.StrEnum):
    EXACT = "exact"
    ROUNDING = "within the paper's rounding"
    DIFFERS = "differs"


@dataclass(frozen=True)
class PaperRow:
    """One published figure beside archviz's: the verdict, and every reason in words (each with its arithmetic)."""

    quantity: Quantity
    layer: str | None
    printed: str
    called: str
    computed: int
    computed_text: str
    verdict: Verdict
    reasons: tuple[str, ...]
    explained: bool  # a difference has a reason: a recorded `why`, or a computed alternative that agrees
    source: str


@dataclass(frozen=True)
class PaperCheck:
    model: str
    source: str
    rows: tuple[PaperRow, ...]


def classify(computed: int, printed: PrintedValue) -> Verdict:
    """exact where equal; within the rounding where |computed - printed| <= half a unit of the last printed digit.

    >>> from archviz.spec.published import parse_printed
    >>> classify(4_089_184_256, parse_printed("4.09 G")), classify(4_089_184_256, parse_printed("3.8 x 10^9"))
    (<Verdict.ROUNDING: "within the paper's rounding">, <Verdict.DIFFERS: 'differs'>)
    """
    if Fraction(computed) == printed.value:
        return Verdict.EXACT
    return Verdict.ROUNDING if abs(Fraction(computed) - printed.value) * 2 <= printed.unit else Verdict.DIFFERS


def check_paper(report: Report, published: tuple[Published, ...], *, source: str = "",
                inspect_model=None) -> PaperCheck:
    """Every published figure of the report's model beside archviz's; `inspect_model(name, overrides)` gives the
    Report of a `compare:` model (archviz.inspect by default).

    >>> check = paper("resnet50")
    >>> [(row.printed, row.verdict.value) for row in check.rows][:2]
    [('25,557,032', 'exact'), ('4.089 G', "within the paper's rounding")]
    """
    if inspect_model is None:
        import archviz

        def inspect_model(name, overrides):
            return archviz.inspect(name, overrides=overrides)

    rows = tuple(_row(report, entry, inspect_model) for entry in published)
    return PaperCheck(model=report.model, source=source, rows=rows)


def paper(model: str) -> PaperCheck:
    """A zoo model (or spec file) held against its spec's `published:` figures; an ArchvizError where it has none.

    >>> paper("vgg16").rows[1].verdict.value
    "within the paper's rounding"
    """
    import archviz
    from archviz.spec.zoo import load_spec, zoo_names

    spec = load_spec(model)
    if not spec.published:
        having = [name for name in zoo_names() if load_spec(name).published]
        raise UnknownNameError(f"{model} has no published figures (a `published:` section in its spec); these have: "
                               + ", ".join(having))
    return check_paper(archviz.inspect(model), spec.published, source=spec.source)


def _row(report: Report, entry: Published, inspect_model) -> PaperRow:
    computed = measure(report, entry.quantity, layer=entry.layer, only=entry.only)
    verdict = classify(computed, entry.printed)
    reasons: list[str] = []
    agreeing = False
    if entry.quantity == Quantity.MACS and entry.called.lower() in FLOP_WORDS:
        reasons.append(f'the source\'s "{entry.called}" are multiply-adds, archviz\'s MACs; archviz\'s FLOPs '
                       f"(2 x MACs) are {_text(entry.quantity, 2 * computed)}")
    if entry.only == Only.CONVOLUTIONS:
        whole = measure(report, entry.quantity, layer=entry.layer)
        reasons.append(f"counts the convolutions only: with the other layers it is {_text(entry.quantity, whole)} "
                       f"({classify(whole, entry.printed).value})")
    if entry.quantity == Quantity.WEIGHT_MEMORY and report.totals.buffers:
        alone = measure(report, Quantity.PARAMS, layer=entry.layer) * FLOAT32_BYTES
        alone_verdict = classify(alone, entry.printed)
        agreeing = alone_verdict != Verdict.DIFFERS
        buffers = report.totals.buffers
        reasons.append(f"batch-norm statistics are buffers: archviz's weight memory holds {exact(buffers)} buffer "
                       f"values ({size_bytes(buffers * FLOAT32_BYTES)}) beside the parameters; the parameters alone "
                       f"are {size_bytes(alone)} ({alone_verdict.value})")
    if entry.compare:
        name, overrides = parse_compare(entry.compare)
        other = measure(inspect_model(name, overrides), entry.quantity, layer=entry.layer, only=entry.only)
        other_verdict = classify(other, entry.printed)
        agreeing = agreeing or other_verdict != Verdict.DIFFERS
        reasons.append(f"{entry.compare}: {_text(entry.quantity, other)} ({other_verdict.value})")
    if entry.why:
        reasons.append(entry.why)
    if verdict == Verdict.DIFFERS and entry.layer:
        reasons.extend(_breakdown(report, entry))
    explained = verdict != Verdict.DIFFERS or bool(entry.why) or agreeing
    if not explained:
        reasons.append("no reason recorded in the spec's published: section")
    return PaperRow(quantity=entry.quantity, layer=entry.layer, printed=entry.printed.text, called=entry.called,
                    computed=computed, computed_text=_text(entry.quantity, computed), verdict=verdict,
                    reasons=tuple(reasons), explained=explained, source=entry.source)


def _breakdown(report: Report, entry: Published) -> list[str]:
    """A group's figure as the sum of its parts (explain's), for a row whose published figure it does not match."""
    if entry.quantity not in (Quantity.PARAMS, Quantity.MACS) or find_group(report, entry.layer) is None:
        return []
    group = explain_group(report, find_group(report, entry.layer).path)
    value = (lambda p: p.params) if entry.quantity == Quantity.PARAMS else (lambda p: p.macs // report.batch)
    parts = [(part.name.removeprefix(group.path + "."), value(part)) for part in group.parts if value(part)]
    if len(parts) < 2:
        return []
    total = sum(v for _, v in parts)
    return [f"its layers: {' + '.join(f'{name} {exact(v)}' for name, v in parts)} = {exact(total)}"]


def parse_compare(text: str) -> tuple[str, dict]:
    """'inception_v3 --set aux_logits=true' -> ('inception_v3', {'aux_logits': True}): a zoo model and its params."""
    from archviz.spec.yaml_loader import load_yaml_text

    words = [w for w in shlex.split(text) if w != "--set"]
    overrides = {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep:
            raise SpecError(f"published compare {text!r}: expected 'MODEL --set name=value ...'")
        overrides[key] = load_yaml_text(value)
    return words[0], overrides


def measure(report: Report, quantity: Quantity, *, layer: str | None = None, only: Only | None = None) -> int:
    """archviz's figure for one published quantity, over the whole model or one layer or group (per image)."""
    layers = members(report, layer) if layer else list(report.layers)
    if only == Only.CONVOLUTIONS:
        layers = [s for s in layers if get_op(s.op).kind == OpKind.CONV]
    batch = report.batch
    if quantity == Quantity.PARAMS:
        return sum(s.params for s in layers)
    if quantity == Quantity.MACS:
        return sum(s.macs for s in layers) // batch
    if quantity == Quantity.WEIGHT_MEMORY:
        return sum(s.params + s.buffers for s in layers) * FLOAT32_BYTES
    return layers[-1].activation_elements // batch  # OUTPUTS: the layer's (a group's last layer's) output


def members(report: Report, name: str) -> list[LayerStats]:
    """The layer of that path, or every layer of the group (a scope: sequential, block or repeat) of that path."""
    found = [s for s in report.layers if s.name == name or s.name.startswith(name + ".")]
    if not found:
        names = [s.name for s in report.layers] + [scope.path for scope in report.graph.scopes]
        raise UnknownNameError(f"no layer or group {name!r} in {report.model}{closest(name, names)}")
    return found


def _text(quantity: Quantity, value: int) -> str:
    if quantity == Quantity.WEIGHT_MEMORY:
        return size_bytes(value)
    return exact(value) if abs(value) < 10_000 else f"{exact(value)} ({human(value)})"
