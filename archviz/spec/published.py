"""A spec's `published:` section: the figures its source printed, each with its citation, as `archviz paper` holds
them against archviz's own (archviz/analysis/papers.py).

    published:
      - quantity: macs            # params, macs, weight_memory or outputs (a layer's output elements)
        value: 3.8 x 10^9         # as printed: the rounding is read from the digits given
        exact: true               # the source's figure is exact though its digits end in zeros (LeNet-5's 60,000)
        called: FLOPs             # the source's own word, where it differs from the quantity's
        layer: inception3a        # a layer or group (a row of the source's table); absent: the whole network
        only: convolutions        # count only these layers (the ResNet paper's VGG-16 figure)
        compare: resnet50_v1      # another zoo model the figure belongs to, computed beside this one
        source: He et al. 2016, Table 1
        why: torchvision's ResNet is v1.5 ...   # the reason for a difference, in words

A value is read as printed: "25,557,032" is exact; "3.8 x 10^9", "15.3 billion", "2.7K", "102.23 MB" are rounded to
their last digit; an integer's trailing zeros are taken as rounding ("60,000": to the nearest ten thousand), unless
the entry says `exact: true` (where the source's own figures add up to it).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from fractions import Fraction

from archviz.errors import SpecError, closest


class Quantity(enum.StrEnum):
    PARAMS = "params"  # trainable parameters
    MACS = "macs"  # multiply-accumulates per image (see archviz/ops/base.py); what most papers' "FLOPs" are
    WEIGHT_MEMORY = "weight_memory"  # bytes of the stored weights, parameters and buffers, float32
    OUTPUTS = "outputs"  # elements of a layer's output per image (AlexNet's "neurons")


class Only(enum.StrEnum):
    CONVOLUTIONS = "convolutions"  # the convolution layers alone (no fully connected layers)


ENTRY_KEYS = ("quantity", "value", "exact", "called", "layer", "only", "compare", "source", "why")
REQUIRED_KEYS = ("quantity", "value", "source")
MAX_TEXT = 1000  # characters of a `why` or `source`: a sentence or two, with the arithmetic

_MULTIPLIERS = {"": 1, "k": 10**3, "thousand": 10**3, "m": 10**6, "million": 10**6, "g": 10**9, "b": 10**9,
                "billion": 10**9, "mb": 10**6, "kb": 10**3, "gb": 10**9}
_NUMBER = re.compile(r"^\s*(?P<digits>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<decimals>\d+))?\s*"
                     r"(?:(?:x|\*|×)\s*10\^(?P<power>\d{1,2})|(?P<word>[A-Za-z]+))?\s*$")


@dataclass(frozen=True)
class PrintedValue:
    """A number as a source printed it: its value and the rounding its last digit implies (half a unit of it)."""

    text: str
    value: Fraction
    unit: Fraction  # one unit in the last printed digit; a value within unit/2 rounds to the printed one

    @property
    def exact(self) -> bool:
        return self.unit == 1 and self.value.denominator == 1


@dataclass(frozen=True)
class Published:
    """One figure a source printed, with its citation."""

    quantity: Quantity
    printed: PrintedValue
    source: str
    called: str = ""
    layer: str | None = None
    only: Only | None = None
    compare: str | None = None
    why: str = ""
    line: int | None = None


def parse_printed(text) -> PrintedValue:
    """'3.8 x 10^9' -> 3.8e9 rounded to 0.1e9; '25,557,032' -> exact; '60,000' -> to the nearest 10,000.

    >>> parse_printed("15.3 billion").unit
    Fraction(100000000, 1)
    """
    raw = str(text)
    match = _NUMBER.match(raw)
    word = (match.group("word") or "").lower() if match else ""
    if match is None or word not in _MULTIPLIERS:
        raise ValueError(f"{raw!r} is not a number as printed (e.g. 25,557,032, 3.8 x 10^9, 15.3 billion, 2.7K)")
    scale = 10 ** int(match.group("power")) if match.group("power") else _MULTIPLIERS[word]
    digits, decimals = match.group("digits").replace(",", ""), match.group("decimals") or ""
    value = Fraction(int(digits + decimals), 10 ** len(decimals)) * scale
    if decimals:
        unit = Fraction(scale, 10 ** len(decimals))
    else:
        zeros = len(digits) - len(digits.rstrip("0")) if digits.rstrip("0") else 0
        unit = Fraction(scale * 10 ** zeros)
    return PrintedValue(raw.strip(), value, unit)


def read_published(raw, *, file: str | None) -> tuple[Published, ...]:
    """The `published:` list, every entry checked; a SpecError names the entry's line and what was expected."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SpecError("`published` must be a list of figures, each with quantity, value and source", file=file)
    return tuple(_entry(item, index, file) for index, item in enumerate(raw))


def _entry(item, index: int, file: str | None) -> Published:
    line = raw_line(item)
    if not isinstance(item, dict):
        raise SpecError(f"published[{index}] must be a mapping with quantity, value and source", file=file, line=line)
    for key in item:
        if key not in ENTRY_KEYS:
            raise SpecError(f"unknown key {key!r} in published[{index}]{closest(key, ENTRY_KEYS)}", file=file,
                            line=line)
    for key in REQUIRED_KEYS:
        if key not in item:
            raise SpecError(f"published[{index}] needs {key!r}", file=file, line=line)
    try:
        quantity = Quantity(item["quantity"])
        only = Only(item["only"]) if "only" in item else None
        printed = parse_printed(item["value"])
    except ValueError as error:
        raise SpecError(f"published[{index}]: {error}", file=file, line=line) from None
    if not isinstance(item.get("exact", False), bool):
        raise SpecError(f"published[{index}].exact must be true or false, got {item['exact']!r}", file=file,
                        line=line)
    if item.get("exact") and printed.value.denominator != 1:
        raise SpecError(f"published[{index}].exact: {printed.text!r} is not a whole number", file=file, line=line)
    if item.get("exact"):
        printed = PrintedValue(printed.text, printed.value, Fraction(1))
    texts = {key: item.get(key, "") for key in ("source", "called", "why")}
    for key, value in texts.items():
        if not isinstance(value, str) or len(value) > MAX_TEXT or (key == "source" and not value.strip()):
            raise SpecError(f"published[{index}].{key} must be text of at most {MAX_TEXT} characters", file=file,
                            line=line)
    names = {key: item.get(key) for key in ("layer", "compare")}
    for key, value in names.items():
        if value is not None and not isinstance(value, str):
            raise SpecError(f"published[{index}].{key} must be a name, got {value!r}", file=file, line=line)
    return Published(quantity=quantity, printed=printed, source=texts["source"].strip(), called=texts["called"],
                     layer=names["layer"], only=only, compare=names["compare"], why=" ".join(texts["why"].split()),
                     line=line)


def raw_line(item) -> int | None:
    return getattr(item, "line", None)
