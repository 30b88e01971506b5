"""The `archviz` command: parse arguments, call the library, render. Results go to stdout, diagnostics to stderr.

A user error (ArchvizError) becomes one line on stderr and exit status 2; anything else is our bug and keeps
its traceback.
"""

from __future__ import annotations

import enum
import functools
import json
import sys
from typing import Annotated, Optional

import typer

from archviz.errors import ArchvizError, SpecError

app = typer.Typer(
    name="archviz",
    help="Take convolutional networks apart: shapes, params, MACs, memory and receptive fields, by formula.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    epilog="\b\nExamples:\n  archviz inspect vgg16\n  archviz explain alexnet conv1\n  archviz diff lenet alexnet\n"
           "  archviz report resnet50 -o resnet50.html\n  archviz list",
    rich_markup_mode=None,  # plain help: typer's rich help imports markdown-it and more, 0.1 s on every --help
)


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    KERAS = "keras"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"


class DiffFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"


class DTypeChoice(enum.StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    FLOAT64 = "float64"
    INT8 = "int8"


ModelArg = Annotated[str, typer.Argument(help="A zoo name (see `archviz list`) or a spec file (my_net.yaml).")]
InputOpt = Annotated[Optional[str], typer.Option("--input", "-i", help="Input shape CxHxW, e.g. 3x32x32.")]
BatchOpt = Annotated[int, typer.Option("--batch", "-b", min=1, help="Batch size; costs are for the whole batch.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a spec parameter: name=value.")]
DTypeOpt = Annotated[DTypeChoice, typer.Option("--dtype", help="Element type for memory figures.")]


def user_errors(command):
    """Turn an ArchvizError into one line on stderr and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ArchvizError as error:
            typer.echo(f"archviz: error: {error}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def parse_overrides(items: list[str] | None) -> dict:
    import yaml

    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set {item!r}: expected name=value, e.g. num_classes=10")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise SpecError(f"--set {item!r}: cannot read the value {value!r}") from None
    return overrides


WIDTH_WHEN_PIPED = 120  # rich falls back to 80 columns off a terminal, which wraps the table's cells


def _console():
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else WIDTH_WHEN_PIPED)


def _inspect(model: str, input: str | None, batch: int, set_: list[str] | None, dtype: DTypeChoice, crosscheck: bool,
             fvcore_full: bool = False):
    import archviz

    return archviz.inspect(model, input=input, overrides=parse_overrides(set_), batch=batch, dtype=dtype.value,
                           crosscheck=crosscheck, fvcore_full=fvcore_full)


@app.command(short_help='Per-layer shapes, params, MACs, memory, receptive field.')
@user_errors
def inspect(
    model: ModelArg,
    input: InputOpt = None,
    batch: BatchOpt = 1,
    set_: SetOpt = None,
    depth: Annotated[Optional[int], typer.Option("--depth", "-d", min=1, help="Show N levels of nesting; deeper groups fold into one row.")] = None,
    crosscheck: Annotated[bool, typer.Option("--crosscheck/--no-crosscheck",
                                             help="Confirm figures with torchinfo, fvcore and FlopCounterMode.")] = True,
    format: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.TABLE,
    fvcore_full: Annotated[bool, typer.Option("--fvcore-full", help="Let fvcore trace at the full input on the CPU "
                                              "when no smaller input runs the same layers (slow at large inputs).")] = False,
    dtype: DTypeOpt = DTypeChoice.FLOAT32,
):
    """Per-layer output shape, params, MACs/FLOPs, memory and receptive field, with totals and the cross-check."""
    report = _inspect(model, input, batch, set_, dtype, crosscheck, fvcore_full)
    if format == OutputFormat.TABLE:
        from archviz.render.table import inspect_view

        _console().print(inspect_view(report, depth=depth))
        return
    from archviz.render import data, keras

    renderers = {
        OutputFormat.KERAS: keras.keras_summary, OutputFormat.JSON: data.report_json,
        OutputFormat.CSV: data.report_csv, OutputFormat.MARKDOWN: data.report_markdown,
    }
    text = renderers[format](report)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command(short_help='Two architectures side by side.')
@user_errors
def diff(
    model_a: ModelArg,
    model_b: ModelArg,
    input: InputOpt = None,
    batch: BatchOpt = 1,
    dtype: DTypeOpt = DTypeChoice.FLOAT32,
    format: Annotated[DiffFormat, typer.Option("--format", "-f", help="Output format.")] = DiffFormat.TABLE,
    html: Annotated[Optional[str], typer.Option("--html", help="Also write a comparison report to this file.")] = None,
):
    """Two architectures side by side: totals, stages aligned by resolution, and what differs, in words."""
    from archviz.analysis.diff import diff_reports
    from archviz.render.diff import diff_dict, diff_view

    reports = [_inspect(m, input, batch, None, dtype, False) for m in (model_a, model_b)]
    result = diff_reports(*reports)
    if html is not None:
        from archviz.render.html.build import write_comparison_of

        typer.echo(f"wrote {write_comparison_of(reports, html)}", err=True)
    if format == DiffFormat.JSON:
        sys.stdout.write(json.dumps(diff_dict(result), indent=2) + "\n")
    else:
        _console().print(diff_view(result))


@app.command(short_help='One self-contained HTML report (or a comparison).')
@user_errors
def report(
    models: Annotated[Optional[list[str]], typer.Argument(help="One model (a report) or several (a comparison).")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="The HTML file (with --zoo: the folder).")] = None,
    input: InputOpt = None,
    batch: BatchOpt = 1,
    set_: SetOpt = None,
    dtype: DTypeOpt = DTypeChoice.FLOAT32,
    crosscheck: Annotated[bool, typer.Option("--crosscheck/--no-crosscheck",
                                             help="Include the peers' counts (needs torch).")] = True,
    zoo: Annotated[bool, typer.Option("--zoo", help="A report for every zoo model and reports/index.html.")] = False,
):
    """Write one self-contained HTML file: summary, diagram, layer table, charts, cross-check, arithmetic."""
    from archviz.render.html.build import write_comparison, write_model_report, write_zoo

    overrides = parse_overrides(set_)
    options = dict(input=input, overrides=overrides, batch=batch, dtype=dtype.value, crosscheck=crosscheck)
    if zoo:
        written = write_zoo(output or "reports", **options)
    elif not models:
        raise SpecError("name a model (archviz report vgg16), several to compare, or --zoo")
    elif len(models) == 1:
        written = [write_model_report(models[0], output, **options)]
    else:
        written = [write_comparison(models, output, **options)]
    for path in written:
        typer.echo(str(path))


@app.command(short_help="One layer's figures with their arithmetic.")
@user_errors
def explain(
    model: ModelArg,
    layer: Annotated[str, typer.Argument(help="A layer path (layer3.2.conv2), a Keras name (conv2d_1) or a short name.")],
    input: InputOpt = None,
    batch: BatchOpt = 1,
    set_: SetOpt = None,
    dtype: DTypeOpt = DTypeChoice.FLOAT32,
):
    """Every figure of one layer, with its arithmetic written out."""
    from archviz.analysis.explain import explain_layer
    from archviz.render.explain import explanation_view

    report = _inspect(model, input, batch, set_, dtype, False)
    _console().print(explanation_view(explain_layer(report, layer)))


@app.command("list", short_help='The architecture zoo.')
@user_errors
def list_models():
    """The architecture zoo: one line per model with its input, params and MACs."""
    import shutil

    from archviz.render.listing import zoo_listing

    width = shutil.get_terminal_size((WIDTH_WHEN_PIPED, 24)).columns if sys.stdout.isatty() else WIDTH_WHEN_PIPED
    sys.stdout.write(zoo_listing(width=width))


@app.command(short_help='The JSON Schema of the spec language.')
@user_errors
def schema():
    """Print the JSON Schema of the spec language (for editors: validation and completion)."""
    from archviz.spec.schema import spec_schema

    sys.stdout.write(json.dumps(spec_schema(), indent=2) + "\n")


class RankDirChoice(enum.StrEnum):
    TB = "TB"
    LR = "LR"


@app.command(short_help='Draw the architecture (SVG, PNG, PDF, DOT).')
@user_errors
def diagram(
    model: ModelArg,
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", help="File to write; its extension picks the format: .svg, .png, .pdf, or .dot (DOT text, "
        "needs no Graphviz). Default: MODEL.svg in the current folder.")] = None,
    rankdir: Annotated[RankDirChoice, typer.Option("--rankdir", case_sensitive=False,
                                                   help="Flow top to bottom (TB) or left to right (LR).")] = RankDirChoice.TB,
    depth: Annotated[Optional[int], typer.Option("--depth", "-d", min=1, help="Show N levels of nesting; deeper groups fold into one box.")] = None,
    expand: Annotated[bool, typer.Option("--expand", help="Draw every layer, no group folded.")] = False,
    unfold: Annotated[Optional[list[str]], typer.Option("--unfold", "-u", help="Also open this group (a path such as layer3.1); repeatable.")] = None,
    input: InputOpt = None,
    set_: SetOpt = None,
):
    """Draw the architecture (SVG, PNG, PDF or DOT): shapes, params and MACs; deep nets fold repeated blocks ("x35")."""
    from pathlib import Path

    from archviz.diagram import FORMATS, collect, fold_state, render, to_dot
    from archviz.output import write_atomic

    if output is None:
        stem = Path(model).stem if model.endswith((".yaml", ".yml")) else model
        output = f"{stem}.svg"
    fmt = Path(output).suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ArchvizError(f"-o {output!r}: cannot tell the format from the extension {Path(output).suffix!r}; "
                           f"use one of {', '.join('.' + f for f in FORMATS)}")
    report = _inspect(model, input, 1, set_, DTypeChoice.FLOAT32, False)
    state = fold_state(report, depth=depth, expand=expand, expanded=unfold or ())
    data = render(to_dot(collect(report, state), rankdir=rankdir.value), fmt)
    typer.echo(str(write_atomic(output, data)))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
