"""`archviz list`: the zoo, one line per model."""

from __future__ import annotations

from rich import box
from rich.table import Table

from archviz.render.format import human, shape


def zoo_table() -> Table:
    import archviz
    from archviz.spec.zoo import zoo_names

    table = Table(box=box.SIMPLE_HEAD, title="archviz zoo (specs/)", title_justify="left")
    for column, justify in (("Model", "left"), ("Input", "right"), ("Params", "right"), ("MACs", "right"),
                            ("Description", "left")):
        table.add_column(column, justify=justify, no_wrap=column != "Description")
    for name in zoo_names():
        report = archviz.inspect(name)
        first_sentence = report.description.split(". ")[0].strip()
        table.add_row(name, shape(report.input), human(report.totals.params), human(report.totals.macs),
                      first_sentence)
    return table
