"""One line of figures per zoo model (`archviz list`), cached on disk by the zoo's files and archviz's code."""

from __future__ import annotations

from dataclasses import dataclass

from archviz.cache import cached_json, content_key



@dataclass(frozen=True)
class ZooSummary:
    name: str
    input_shape: tuple[int, ...]
    params: int
    macs: int
    description: str


def zoo_summaries() -> list[ZooSummary]:
    """Every zoo model's input, params and MACs at its default input, in name order.

    >>> next(row for row in zoo_summaries() if row.name == "vgg16").params
    138357544
    """
    from archviz.spec.zoo import zoo_dir

    key = content_key(zoo_dir().glob("*.yaml"), with_code=True)
    rows = cached_json("zoo-summaries", key, _summarize_zoo)
    return [ZooSummary(row["name"], tuple(row["input_shape"]), row["params"], row["macs"], row["description"])
            for row in rows]


def _summarize_zoo() -> list[dict]:
    import archviz

    rows = []
    for name in archviz.zoo_names():
        report = archviz.inspect(name)
        rows.append({"name": name, "input_shape": list(report.input), "params": report.totals.params,
                     "macs": report.totals.macs, "description": report.description})
    return rows
