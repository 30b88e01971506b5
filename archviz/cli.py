"""The `archviz` command: parse arguments, call the library, render. Results go to stdout, diagnostics to stderr.

A user error (ArchvizError) becomes one line on stderr and exit status 2; anything else is our bug and keeps
its traceback.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from archviz.errors import ArchvizError, SpecError
from archviz.profile.choices import Amp, Optimizer  # enums only: no torch


class _OneLineErrors(TyperGroup):
    """Every usage error (a bad option value, a missing argument, an unknown command) as the same one line as any
    other user error, `archviz: error: ...`, with exit status 2: not click's usage block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        from typer._click import exceptions
        from typer.exceptions import Abort

        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except exceptions.NoArgsIsHelpError as error:  # `archviz` alone: the help, as before
            error.show()
            sys.exit(error.exit_code)
        except exceptions.UsageError as error:
            _echo(f"archviz: error: {_usage_text(error.format_message())} (see {_command(error.ctx)} --help)", err=True)
            sys.exit(2)
        except exceptions.ClickException as error:
            _echo(f"archviz: error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except Abort:
            _echo("archviz: interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


def _command(context) -> str:
    """"archviz inspect", however archviz was started (python -m archviz.cli, torchrun)."""
    names = []
    while context is not None and context.parent is not None:
        names.append(context.info_name)
        context = context.parent
    return " ".join(["archviz", *reversed(names)])


def _usage_text(message: str) -> str:
    """click's message with its wording tightened: "Invalid value for '--batch' / '-b': 0 is not in the range
    x>=1." -> "--batch: 0 is not in the range x>=1"."""
    import re

    message = re.sub(r"^Invalid value for '(-[^']+)'(?: / '-[^']+')*: ", r"\1: ", message.strip())
    return message.rstrip(".")


app = typer.Typer(
    cls=_OneLineErrors,
    name="archviz",
    help="Take convolutional networks apart: shapes, params, MACs, memory and receptive fields, by formula.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    epilog="\b\nExamples:\n  archviz inspect vgg16\n  archviz explain alexnet conv1\n  archviz diff lenet alexnet\n"
           "  archviz report resnet50 -o resnet50.html\n  archviz list\n"
           "  archviz train lenet -o runs/lenet\n  archviz cam lenet --weights runs/lenet --sample 3 -o cam.png",
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


ModelArg = Annotated[str, typer.Argument(help=(
    "A zoo name (see `archviz list`), a spec file (my_net.yaml), torchvision:NAME (e.g. torchvision:resnet50), "
    "timm:NAME (e.g. timm:convnext_tiny; needs timm), "
    "FILE.py:Name or package.module:name (a torch.nn.Module class or a function returning one: archviz IMPORTS AND "
    "RUNS that code, so name only code you trust), an .onnx file, or a state dict (.pth/.pt) of a zoo or torchvision "
    "model."))]
InputOpt = Annotated[Optional[str], typer.Option("--input", "-i", help="Input shape CxHxW, e.g. 3x32x32.")]
MAX_COUNT = 10**9  # every count an option takes is capped as spec sizes are (archviz.spec.args.MAX_DIMENSION)
BatchOpt = Annotated[int, typer.Option("--batch", "-b", min=1, max=MAX_COUNT, help="Batch size; costs are for the whole batch.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a spec parameter: name=value.")]
DTypeOpt = Annotated[DTypeChoice, typer.Option("--dtype", help="Element type for memory figures.")]
TrainOpt = Annotated[bool, typer.Option("--train", help="Also predict one training step's memory: its peak, when it "
                                        "comes and what it holds.")]
StepOptimizerOpt = Annotated[Optimizer, typer.Option("--optimizer", help="The optimizer of the training step "
                                                     "(sgd: plain SGD, no state; momentum: SGD with momentum 0.9, "
                                                     "as archviz train's sgd).")]
RooflineDeviceOpt = Annotated[Optional[str], typer.Option("--device", help=(
    "Predict each layer's time on a device by a roofline: h100, h100-pcie, h200, a100, a100-40gb, l4, t4, rtx4090, "
    "rtx3090, or cpu (this machine, calibrated once)."))]
AmpOpt = Annotated[Optional[Amp], typer.Option("--amp", help="With --train: the step under torch.autocast to bf16 or "
                                               "fp16 (weights, their gradients and the optimizer state stay float32).")]
FitOpt = Annotated[Optional[str], typer.Option("--fit", help="The largest batch whose training step fits in this much "
                                               "memory: 24GB, 80GiB, 512MB (implies --train).")]
CheckpointingOpt = Annotated[Optional[int], typer.Option("--checkpointing", min=2, max=MAX_COUNT, help=(
    "Activation checkpointing in N segments, cut where one tensor alone crosses: every segment but the last keeps "
    "only its input and runs its forward again in backward (torch.utils.checkpoint)."))]
KwargsOpt = Annotated[Optional[str], typer.Option("--kwargs", help=(
    "Keyword arguments for a PyTorch model's class or factory, as a JSON object: '{\"num_classes\": 10}'."))]


def _write(text: str) -> None:
    """Text to stdout, any control character from a file made visible (render/visible.py)."""
    from archviz.render.visible import visible

    sys.stdout.write(visible(text))


def _echo(message, *, err: bool = False) -> None:
    from archviz.render.visible import visible

    typer.echo(visible(str(message)), err=err)


def user_errors(command):
    """Turn an ArchvizError into one line on stderr and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ArchvizError as error:
            _echo(f"archviz: error: {error}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def parse_overrides(items: list[str] | None) -> dict:
    """--set name=value pairs; each value is read as a spec's YAML is (plain data, no aliases, bounded size)."""
    from archviz.spec.yaml_loader import load_yaml_text

    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set {item!r}: expected name=value, e.g. num_classes=10")
        try:
            overrides[key.strip()] = load_yaml_text(value)
        except SpecError as error:
            raise SpecError(f"--set {item!r}: cannot read the value: {error.message}") from None
        except ValueError:  # an integer of more than 4,300 digits
            raise SpecError(f"--set {item!r}: cannot read the value {value!r}") from None
    return overrides


WIDTH_WHEN_PIPED = 120  # rich falls back to 80 columns off a terminal, which wraps the table's cells


def _console():
    """Names from files are text, never markup or terminal control (render/visible.py)."""
    from archviz.render.visible import safe_console

    return safe_console(width=None if sys.stdout.isatty() else WIDTH_WHEN_PIPED, markup=False)


def _inspect(model: str, input: str | None, batch: int, set_: list[str] | None, dtype: DTypeChoice, crosscheck: bool,
             fvcore_full: bool = False, kwargs: str | None = None, *, optimizer: str | None = None,
             fit_bytes: int | None = None, device: str | None = None, amp: str | None = None,
             checkpointing: int | None = None):
    import archviz

    return archviz.inspect(_resolve(model), input=input, overrides=parse_overrides(set_), kwargs=_kwargs(kwargs),
                           batch=batch, dtype=dtype.value, crosscheck=crosscheck, fvcore_full=fvcore_full,
                           optimizer=optimizer, fit_bytes=fit_bytes, device=device, amp=amp,
                           checkpointing=checkpointing)


def _resolve(model: str) -> str:
    """A state dict file stands for the model whose tensors it holds (said on stderr); any other source as it is."""
    if not model.lower().endswith((".pth", ".pt")):
        return model
    from archviz.trace.state_dict import identify

    match = identify(model)
    _echo(f"archviz: {match.message}", err=True)
    return match.source


def _stem(model: str) -> str:
    """A file name for a model's default output, in the current folder: a file's stem, or the source made safe
    (torchvision_resnet50); never a path (archviz.format.slug)."""
    from archviz.format import slug

    if model.lower().endswith((".yaml", ".yml", ".onnx", ".pth", ".pt")):
        return slug(Path(model).stem)
    return slug(model.rpartition("/")[2].replace(".py:", "_"))


def _kwargs(text: str | None) -> dict | None:
    if text is None:
        return None
    from archviz.trace.load import parse_kwargs

    return parse_kwargs(text)


@app.command(short_help='Per-layer shapes, params, MACs, memory, receptive field.')
@user_errors
def inspect(
    model: ModelArg,
    input: InputOpt = None,
    batch: BatchOpt = 1,
    set_: SetOpt = None,
    depth: Annotated[Optional[int], typer.Option("--depth", "-d", min=1, max=MAX_COUNT, help="Show N levels of nesting; deeper groups fold into one row.")] = None,
    crosscheck: Annotated[bool, typer.Option("--crosscheck/--no-crosscheck",
                                             help="Confirm figures with torchinfo, fvcore and FlopCounterMode, and the totals with the module itself.")] = True,
    format: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.TABLE,
    fvcore_full: Annotated[bool, typer.Option("--fvcore-full", help="Let fvcore trace at the full input on the CPU "
                                              "when no smaller input runs the same layers (slow at large inputs).")] = False,
    dtype: DTypeOpt = DTypeChoice.FLOAT32,
    kwargs: KwargsOpt = None,
    train: TrainOpt = False,
    optimizer: StepOptimizerOpt = Optimizer.SGD,
    fit: FitOpt = None,
    device: RooflineDeviceOpt = None,
    amp: AmpOpt = None,
    checkpointing: CheckpointingOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every cross-check peer: how it counted, its "
                                          "notes and figures (a disagreement is always shown in full).")] = False,
):
    """Per-layer output shape, params, MACs/FLOPs, memory and receptive field, with totals and the cross-check's
    verdict; with --train, one training step's memory predicted (and with --fit, the largest batch that fits)."""
    from archviz.format import parse_bytes

    fit_bytes = parse_bytes(fit, what="--fit") if fit is not None else None
    wants_step = train or fit_bytes is not None or amp is not None or checkpointing is not None
    training = optimizer.value if wants_step else None
    report = _inspect(model, input, batch, set_, dtype, crosscheck, fvcore_full, kwargs, optimizer=training,
                      fit_bytes=fit_bytes, device=device, amp=amp and amp.value, checkpointing=checkpointing)
    if format == OutputFormat.TABLE:
        from archviz.render.table import inspect_view

        _console().print(inspect_view(report, depth=depth, verbose=verbose))
        return
    from archviz.render import data, keras

    renderers = {
        OutputFormat.KERAS: keras.keras_summary, OutputFormat.JSON: data.report_json,
        OutputFormat.CSV: data.report_csv, OutputFormat.MARKDOWN: data.report_markdown,
    }
    text = renderers[format](report)
    _write(text if text.endswith("\n") else text + "\n")


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
    kwargs: Annotated[Optional[str], typer.Option("--kwargs", help=(
        "Keyword arguments (a JSON object) for whichever model is PyTorch code (torchvision:, timm:, FILE.py:, "
        "module:)."
    ))] = None,
):
    """Two architectures side by side: totals, stages aligned by resolution, and what differs, in words."""
    from archviz.analysis.diff import diff_reports
    from archviz.render.diff import diff_dict, diff_view

    from archviz.trace.load import is_model_source

    reports = [_inspect(m, input, batch, None, dtype, False, kwargs=kwargs if is_model_source(m) else None)
               for m in (model_a, model_b)]
    result = diff_reports(*reports)
    if html is not None:
        from archviz.render.html.build import write_comparison_of

        _echo(f"wrote {write_comparison_of(reports, html)}", err=True)
    if format == DiffFormat.JSON:
        _write(json.dumps(diff_dict(result), indent=2) + "\n")
    else:
        _console().print(diff_view(result))


@app.command(short_help='One self-contained HTML report (or a comparison).')
@user_errors
def report(
    models: Annotated[Optional[list[str]], typer.Argument(help="One model (a report) or several (a comparison).")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="The HTML file (with --zoo: the folder, "
                      "reports/ by default). Default: reports/NAME.html; with --run RUN reports/NAME-RUN.html; "
                      "several models reports/A-vs-B.html.")] = None,
    input: InputOpt = None,
    batch: BatchOpt = 1,
    set_: SetOpt = None,
    dtype: DTypeOpt = DTypeChoice.FLOAT32,
    crosscheck: Annotated[bool, typer.Option("--crosscheck/--no-crosscheck",
                                             help="Include the peers' counts (needs torch).")] = True,
    zoo: Annotated[bool, typer.Option("--zoo", help="A report for every zoo model and reports/index.html, sharing "
                   "one plotly.min.js beside them.")] = False,
    kwargs: KwargsOpt = None,
    device: RooflineDeviceOpt = None,
    run: Annotated[Optional[str], typer.Option(
        "--run", help="A run folder of archviz train: the report is of the network it trained, with its learning "
        "curves, confusion matrix, per-class report, filters, activations and class-activation maps.")] = None,
):
    """Write one self-contained HTML file: summary, diagram, layer table, charts, cross-check, arithmetic."""
    from archviz.render.html.build import write_comparison, write_model_report, write_zoo

    overrides = parse_overrides(set_)
    options = dict(input=input, overrides=overrides, batch=batch, dtype=dtype.value, crosscheck=crosscheck,
                   kwargs=_kwargs(kwargs), device=device)
    models = [_resolve(m) for m in models or []]
    if run is not None and (zoo or len(models) != 1 or input or overrides or kwargs):
        raise SpecError("--run goes with one model, the one the run trained, and without --input, --set or --kwargs "
                        "(the report is of the network as trained)")
    if zoo:
        written = write_zoo(output, **options)
    elif not models:
        raise SpecError("name a model (archviz report vgg16), several to compare, or --zoo")
    elif len(models) == 1:
        written = [write_model_report(models[0], output, run=run, **options)]
    else:
        written = [write_comparison(models, output, **options)]
    for path in written:
        _echo(str(path))


@app.command(short_help="One layer's (or group's) figures with their arithmetic.")
@user_errors
def explain(
    model: ModelArg,
    layer: Annotated[str, typer.Argument(help="A layer path (layer3.2.conv2), a Keras name (conv2d_1), a short name, "
                                              "or a group (inception3a, layer3).")],
    input: InputOpt = None,
    batch: BatchOpt = 1,
    set_: SetOpt = None,
    dtype: DTypeOpt = DTypeChoice.FLOAT32,
    kwargs: KwargsOpt = None,
):
    """Every figure of one layer, with its arithmetic written out; for a group, its totals from its parts."""
    from archviz.analysis.explain import GroupExplanation, explain as explain_name
    from archviz.render.explain import explanation_view, group_view

    report = _inspect(model, input, batch, set_, dtype, False, kwargs=kwargs)
    explanation = explain_name(report, layer)
    _console().print(group_view(explanation) if isinstance(explanation, GroupExplanation)
                     else explanation_view(explanation))


@app.command(short_help="A model's figures beside its source's published ones, with reasons.")
@user_errors
def paper(
    model: ModelArg,
    format: Annotated[DiffFormat, typer.Option("--format", "-f", help="Output format.")] = DiffFormat.TABLE,
):
    """Each figure the model's source published (its spec's `published:` section: params, MACs or the paper's
    "FLOPs", per-layer rows) beside archviz's, with a verdict (exact, within the paper's rounding, differs) and, for
    every difference, the reason in words and arithmetic."""
    from archviz.analysis.papers import paper as check_paper
    from archviz.render.paper import paper_dict, paper_text

    check = check_paper(model)
    if format == DiffFormat.JSON:
        _write(json.dumps(paper_dict(check), indent=2) + "\n")
    else:
        _write(paper_text(check, width=WIDTH_WHEN_PIPED))


@app.command("list", short_help='The architecture zoo.')
@user_errors
def list_models():
    """The architecture zoo: one line per model with its input, params and MACs."""
    import shutil

    from archviz.render.listing import zoo_listing

    width = shutil.get_terminal_size((WIDTH_WHEN_PIPED, 24)).columns if sys.stdout.isatty() else WIDTH_WHEN_PIPED
    _write(zoo_listing(width=width))


class PickSource(enum.StrEnum):  # archviz.analysis.pick.Source's values, for the help without importing it
    ZOO = "zoo"
    TORCHVISION = "torchvision"
    TIMM = "timm"


class PickTask(enum.StrEnum):
    IMAGENET = "imagenet"


@app.command(short_help="Backbones within a budget, by published ImageNet top-1, with the Pareto front.")
@user_errors
def pick(
    max_params: Annotated[Optional[str], typer.Option("--max-params", help="At most this many parameters: 25M, "
                                                      "1.5e7, 3,000,000.")] = None,
    max_macs: Annotated[Optional[str], typer.Option("--max-macs", help="At most this many MACs per image: 1G, "
                                                    "600M, 4.1e9.")] = None,
    max_memory: Annotated[Optional[str], typer.Option("--max-memory", help="At most this much memory at --batch: "
                          "inference (weights and peak activations), or with --train a training step's peak: 8GB, "
                          "512MiB.")] = None,
    batch: BatchOpt = 1,
    train: Annotated[bool, typer.Option("--train", help="Memory is one training step's predicted peak (with "
                                        "--optimizer), as inspect --train.")] = False,
    optimizer: StepOptimizerOpt = Optimizer.SGD,
    max_latency: Annotated[Optional[str], typer.Option("--max-latency", help="At most this predicted forward pass "
                           "of the batch on --device, in milliseconds: 5, 12.5ms, 0.5s.")] = None,
    device: RooflineDeviceOpt = None,
    input: Annotated[Optional[str], typer.Option("--input", "-i", help="The input every model is analysed at, CxHxW "
                     "(default 3x224x224).")] = None,
    task: Annotated[PickTask, typer.Option("--task", help="What the models are for: imagenet (ImageNet-1K "
                    "classification, whose top-1 torchvision publishes).")] = PickTask.IMAGENET,
    source: Annotated[Optional[list[PickSource]], typer.Option("--source", help="Where candidates come from, "
                      "repeatable: zoo, torchvision (default: both), timm (needs --timm).")] = None,
    timm: Annotated[Optional[str], typer.Option("--timm", help="timm's architectures to add, a glob of "
                    "timm.list_models ('resnet*'); timm's configs publish no top-1.")] = None,
    format: Annotated[DiffFormat, typer.Option("--format", "-f", help="Output format.")] = DiffFormat.TABLE,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Also write an HTML page: top-1 against "
                      "MACs with the Pareto front (e.g. reports/pick.html).")] = None,
):
    """The zoo's, torchvision's (and with --timm, timm's) classifiers that fit the budget at the input, sorted by
    published ImageNet-1K top-1 (cited: torchvision's weights metadata), with the Pareto front of top-1 against MACs
    (and against predicted latency with --device). Every other figure is archviz's own, at this input."""
    from archviz.analysis.pick import (
        Budget, PickOptions, Source, default_sources, parse_count, parse_milliseconds, pick as pick_models,
    )
    from archviz.format import parse_bytes

    budget = Budget(
        max_params=None if max_params is None else parse_count(max_params, what="--max-params"),
        max_macs=None if max_macs is None else parse_count(max_macs, what="--max-macs"),
        max_memory_bytes=None if max_memory is None else parse_bytes(max_memory, what="--max-memory"),
        max_latency_s=None if max_latency is None else parse_milliseconds(max_latency, what="--max-latency"))
    if max_latency is not None and device is None:
        raise SpecError("--max-latency needs --device (h100, a100, ..., or cpu): the roofline of which device?")
    options = PickOptions(input=_pick_input(input), batch=batch, optimizer=optimizer.value if train else None,
                          device=device, memory=max_memory is not None or train)
    sources = [Source(s.value) for s in source or []] or default_sources()
    if timm is not None and Source.TIMM not in sources:
        sources.append(Source.TIMM)
    with _pick_progress() as progress:
        chosen = pick_models(budget, options, sources=sources, timm_pattern=timm, progress=progress)
    if output is not None:
        from archviz.render.html.pick_page import write_pick_page

        _echo(f"wrote {write_pick_page(chosen, output)}", err=True)
    if format == DiffFormat.JSON:
        from archviz.render.pick import pick_dict

        _write(json.dumps(pick_dict(chosen), indent=2) + "\n")
    else:
        from archviz.render.pick import pick_text

        _write(pick_text(chosen, width=WIDTH_WHEN_PIPED))


def _pick_input(text: str | None) -> tuple[int, ...]:
    from archviz.graph.build import parse_input

    if text is None:
        from archviz.analysis.pick import IMAGENET_INPUT

        return IMAGENET_INPUT
    shape = parse_input(text)
    if len(shape) != 3 or shape[0] != 3:
        raise SpecError(f"--input {text!r}: pick analyses ImageNet classifiers, which take RGB images: 3 x H x W "
                        "(3x224x224)")
    return shape


@contextlib.contextmanager
def _pick_progress():
    """A progress bar on stderr while models are analysed (the first pick traces each; later ones read the cache);
    none off a terminal, where rich would leave an empty line."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from archviz.render.visible import safe_console

    bar = Progress(TextColumn("analysing {task.description}"), BarColumn(), MofNCompleteColumn(),
                   console=safe_console(stderr=True, markup=False), transient=True)
    task = bar.add_task("", total=None)

    def advance(name: str, done: int, total: int) -> None:
        bar.update(task, description=name, completed=done, total=total)

    with bar:
        yield advance


@app.command(short_help="The ops a spec can use: formulas, arguments, what they match.")
@user_errors
def ops(name: Optional[str] = typer.Argument(None, help="One op (or alias) to show in full.")):
    """The op registry: every op with its kind and torch module, or one op's formulas, arguments and matches."""
    import shutil

    from archviz.render.ops_listing import op_entry, ops_listing

    if name is not None:
        _write(op_entry(name))
        return
    width = shutil.get_terminal_size((WIDTH_WHEN_PIPED, 24)).columns if sys.stdout.isatty() else WIDTH_WHEN_PIPED
    _write(ops_listing(width=width))


@app.command(short_help='The JSON Schema of the spec language.')
@user_errors
def schema():
    """Print the JSON Schema of the spec language (for editors: validation and completion)."""
    from archviz.spec.schema import spec_schema

    _write(json.dumps(spec_schema(), indent=2) + "\n")


class RankDirChoice(enum.StrEnum):
    TB = "TB"
    LR = "LR"


class CostChoice(enum.StrEnum):  # archviz.diagram.Cost's values: the CLI may not import the diagram modules
    MACS = "macs"
    PARAMS = "params"
    MEMORY = "memory"
    TIME = "time"


class DiagramStyle(enum.StrEnum):
    GRAPH = "graph"  # Graphviz: a box per layer or folded group, with its figures
    PAPER = "paper"  # the papers' figure: feature maps as 3-D boxes, kernels, skips as arrows (archviz/diagram/paper.py)


@app.command(short_help='Draw the architecture (SVG, PNG, PDF, DOT).')
@user_errors
def diagram(
    model: ModelArg,
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", help="File to write; its extension picks the format: .svg, .png, .pdf, or .dot (DOT text, "
        "needs no Graphviz). Default: reports/NAME.svg, as report writes reports/NAME.html.")] = None,
    rankdir: Annotated[RankDirChoice, typer.Option("--rankdir", case_sensitive=False,
                                                   help="Flow top to bottom (TB) or left to right (LR).")] = RankDirChoice.TB,
    depth: Annotated[Optional[int], typer.Option("--depth", "-d", min=1, max=MAX_COUNT, help="Show N levels of nesting; deeper groups fold into one box.")] = None,
    expand: Annotated[bool, typer.Option("--expand", help="Draw every layer, no group folded.")] = False,
    unfold: Annotated[Optional[list[str]], typer.Option("--unfold", "-u", help="Also open this group (a path such as layer3.1); repeatable.")] = None,
    style: Annotated[DiagramStyle, typer.Option("--style", case_sensitive=False, help="graph: Graphviz boxes with "
                     "their figures; paper: the papers' figure, feature maps as 3-D boxes sized by their shapes, "
                     "kernels, skips as arrows (.svg or .png; needs neither Graphviz nor torch).")] = DiagramStyle.GRAPH,
    color_by: Annotated[Optional[CostChoice], typer.Option(
        "--color-by", case_sensitive=False, help="Fill each box by its share of the largest box's MACs, params, "
        "output memory or predicted time (time needs --device), with a legend; default: by layer kind.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="With --color-by time: the device whose "
                                                  "roofline predicts each layer's time (h100, a100, ..., or cpu).")] = None,
    input: InputOpt = None,
    set_: SetOpt = None,
    kwargs: KwargsOpt = None,
):
    """Draw the architecture (SVG, PNG, PDF or DOT): shapes, params and MACs; deep nets fold repeated blocks ("x35")."""
    from pathlib import Path

    from archviz.diagram import FORMATS, collect, fold_state, render, to_dot
    from archviz.output import default_output, write_atomic

    if output is None:
        output = str(default_output([_stem(model)], ".svg"))
    fmt = Path(output).suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ArchvizError(f"-o {output!r}: cannot tell the format from the extension {Path(output).suffix!r}; "
                           f"use one of {', '.join('.' + f for f in FORMATS)}")
    if style == DiagramStyle.PAPER and fmt not in ("svg", "png"):
        raise ArchvizError(f"-o {output!r}: --style paper writes .svg or .png (convert the SVG for other formats)")
    if color_by == CostChoice.TIME and device is None:
        raise ArchvizError("--color-by time needs --device (h100, a100, ..., or cpu): the roofline of which device?")
    if color_by is not None and style == DiagramStyle.PAPER:
        raise ArchvizError("--color-by colours the graph style's boxes; --style paper draws shapes, not costs")
    report = _inspect(model, input, 1, set_, DTypeChoice.FLOAT32, False, kwargs=kwargs, device=device)
    folding = depth is not None or expand or bool(unfold)
    state = fold_state(report, depth=depth, expand=expand, expanded=unfold or ())
    if style == DiagramStyle.PAPER:
        from archviz.diagram.paper import draw_paper

        data = draw_paper(report.graph, fmt, state=state if folding else None)
    else:
        cost = None if color_by is None else color_by.value
        data = render(to_dot(collect(report, state), rankdir=rankdir.value, cost=cost), fmt)
    _echo(str(write_atomic(output, data)))


from archviz.train.export import ExportFormat as _ExportFormat  # noqa: E402  (an enum; torch is imported later)
from archviz.train.predict import Checkpoint as _Checkpoint  # noqa: E402


@app.command(short_help="Write the architecture or a trained run as ONNX (or TorchScript, a state dict).")
@user_errors
def export(
    model: ModelArg,
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", help="The .onnx file to write. Default: MODEL.onnx in the current folder.")] = None,
    input: InputOpt = None,
    set_: SetOpt = None,
    weights: Annotated[Optional[str], typer.Option(
        "--weights", help="A run folder of archviz train (its best.pt) or one of its checkpoints: the network the "
        "run trained; or a PyTorch state dict (torch.save(model.state_dict(), f)) whose keys are the layer paths, "
        "as in archviz.torch_build.to_torch. Default: torch's random initialisation.")] = None,
    no_weights: Annotated[bool, typer.Option(
        "--no-weights", help="Write the weights as graph inputs, not data: a small file for Netron; a runtime must "
        "be given them.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random initial weights.")] = 0,
    kwargs: KwargsOpt = None,
    format: Annotated[_ExportFormat, typer.Option(
        "--format", "-f", help="onnx; torchscript (torch.jit.trace, for LibTorch); state_dict (torch.save of the "
        "module's tensors).")] = _ExportFormat.ONNX,
):
    """Write an ONNX file (opset 20) of the model, or of a trained run, for Netron and ONNX runtimes, and print its
    path; or a TorchScript file or state dict (--format).

    MODEL may be a run folder of archviz train (or a checkpoint of one), as may --weights: the file holds the network
    the run trained, its classes and normalisation in the ONNX metadata. Layers are named by their paths and weights
    by to_torch's state-dict keys; layers without a formula (opaque) cannot be written to ONNX.
    """
    from pathlib import Path

    import archviz
    from archviz.onnx import export_onnx
    from archviz.train.export import is_run_weights

    if is_run_weights(weights if weights is not None else model):
        _export_run(model, weights, output=output, format=format,
                    refused={"--input": input, "--set": set_, "--kwargs": kwargs, "--no-weights": no_weights,
                             "--seed": seed != 0})
        return
    if format != _ExportFormat.ONNX:
        _export_module(model, weights, output=output, format=format, seed=seed,
                       refused={"--input": input, "--set": set_, "--kwargs": kwargs, "--no-weights": no_weights})
        return
    graph = archviz.load(_resolve(model), input=input, overrides=parse_overrides(set_), kwargs=_kwargs(kwargs))
    if output is None:
        output = f"{_stem(model)}.onnx"
        if Path(output).resolve() == Path(model).resolve():
            raise ArchvizError(f"writing {output!r} would replace the model read; name another file with -o")
    _echo(str(export_onnx(graph, output, checkpoint=weights, as_inputs=no_weights, seed=seed)))


def _refuse(refused: dict, why: str) -> None:
    given = [name for name, value in refused.items() if value]
    if given:
        raise ArchvizError(f"{', '.join(given)}: {why}; leave {'them' if len(given) > 1 else 'it'} out")


def _export_run(model: str, weights: str | None, *, output: str | None, format: _ExportFormat, refused: dict) -> None:
    from archviz.inside.trained import load_trained
    from archviz.train.export import default_output, export_trained

    _refuse(refused, "a run's network is the one it trained (its input, classes and weights)")
    trained = load_trained(model, weights)
    path = export_trained(trained, output or default_output(weights or model, format), format=format)
    _echo(str(path))


def _export_module(model: str, weights: str | None, *, output: str | None, format: _ExportFormat, seed: int,
                   refused: dict) -> None:
    from archviz.inside.trained import load_trained
    from archviz.train.export import default_output, export_trained

    _refuse(refused, f"--format {format.value} exports the model as archviz.load reads it")
    trained = load_trained(model, weights, seed=seed)
    _echo(str(export_trained(trained, output or default_output(model, format), format=format)))


from archviz.train.choices import Adapt as _TrainAdapt, Device as _TrainDevice  # noqa: E402  (enums only)
from archviz.train.choices import Optimizer as _TrainOptimizer, Schedule as _TrainSchedule  # noqa: E402
from archviz.train.choices import Augment as _TrainAugment, Log as _TrainLog, Normalize as _TrainNormalize  # noqa: E402
from archviz.pretrain.choices import ProbeKind as _ProbeKind, Task as _Task  # noqa: E402  (enums only)
from archviz.train.options import TrainOptions  # noqa: E402  (a record: no torch)


TRAIN_OPTIONS = {  # name: (annotation, default); every option of train, compare and sweep, declared once
    "dataset": (Annotated[str, typer.Option(
        "--dataset", help="digits (bundled with scikit-learn), mnist:PATH (idx files), cifar10:PATH (python batches) "
        "or folder:PATH (a subfolder of images per class). Nothing is downloaded.")], "digits"),
    "data": (Annotated[Optional[str], typer.Option(
        "--data", help="The dataset's folder (or write --dataset mnist:PATH).")], None),
    "epochs": (Annotated[Optional[int], typer.Option(
        "--epochs", min=1, max=MAX_COUNT, help="Epochs [default: 20].")], None),
    "batch_size": (Annotated[Optional[int], typer.Option(
        "--batch-size", min=1, max=MAX_COUNT, help="Batch size [default: 32].")], None),
    "lr": (Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate [default: 0.003].")], None),
    "optimizer": (Annotated[Optional[_TrainOptimizer], typer.Option("--optimizer", help=(
        "sgd: SGD with Nesterov momentum 0.9 (inspect --train --optimizer momentum predicts its memory); adam; adamw "
        "[default: adamw]."))], None),
    "schedule": (Annotated[Optional[_TrainSchedule], typer.Option(
        "--schedule", help="Learning rate per batch: cosine (after a warm-up epoch), step, none [default: cosine].")],
        None),
    "weight_decay": (Annotated[Optional[float], typer.Option("--weight-decay", help="[default: 0.05]")], None),
    "augment": (Annotated[Optional[_TrainAugment], typer.Option(
        "--augment", help="none; light: small random rotations, scalings and shifts (and mirror images for photos, "
        "never digits); standard: larger ones, and colour jitter for photos; strong: with cutout and mixup too "
        "[default: light].")], None),
    "normalize": (Annotated[Optional[_TrainNormalize], typer.Option(
        "--normalize", help="dataset: each channel by the training images' mean and std; imagenet: by ImageNet's "
        "(for torchvision's weights); none [default: dataset].")], None),
    "adapt": (Annotated[Optional[_TrainAdapt], typer.Option(
        "--adapt", help="input: resize the images to the model's input; model: give the model the images' shape "
        "[default: input].")], None),
    "device": (Annotated[_TrainDevice, typer.Option("--device", help="auto picks CUDA when available.")],
               _TrainDevice.AUTO),
    "seed": (Annotated[Optional[int], typer.Option(
        "--seed", help="Seed of weights, data order and augmentation [default: 0].")], None),
    "threads": (Annotated[Optional[int], typer.Option(
        "--threads", min=1, max=MAX_COUNT, help="CPU threads [default: every core; on a busy machine 1 can be much "
        "faster].")], None),
    "compile": (Annotated[bool, typer.Option(
        "--compile", help="torch.compile the model (slower on small CPU runs).")], False),
    "time_budget": (Annotated[Optional[float], typer.Option(
        "--time-budget", min=0, help="Seconds of training a run may take; it ends after the last epoch that "
        "fits.")], None),
    "patience": (Annotated[Optional[int], typer.Option(
        "--patience", min=1, max=MAX_COUNT, help="Stop after this many epochs without a lower validation loss "
        "(best.pt stays the lowest's) [default: never].")], None),
    "label_smoothing": (Annotated[Optional[float], typer.Option(
        "--label-smoothing", min=0, max=0.99, help="Smooth the training loss's targets by this much (the validation "
        "loss is not) [default: 0].")], None),
    "clip_grad": (Annotated[Optional[float], typer.Option(
        "--clip-grad", help="Clip the gradients' total L2 norm to this [default: not clipped].")], None),
    "val_fraction": (Annotated[Optional[float], typer.Option(
        "--val-fraction", help="The share of the images held out for validation (of the training files for mnist "
        "and cifar10; a folder's own val/ is used as it is) [default: 0.1].")], None),
    "init": (Annotated[Optional[str], typer.Option(
        "--init", help="Start from these weights: a run folder of archviz train (its best.pt), a checkpoint, a state "
        "dict (.pth) named by layer paths, or torchvision (a zoo model built like a torchvision network: its weights "
        "from torch hub's cache on this machine; never downloaded). A head for other classes is fitted anew.")], None),
    "freeze": (Annotated[Optional[str], typer.Option(
        "--freeze", help="Layer paths (comma-separated) whose parameters are not trained, or backbone: all but the "
        "head (a linear probe).")], None),
    "log": (Annotated[Optional[_TrainLog], typer.Option(
        "--log", help="csv: metrics.csv and metrics.json; tensorboard: TensorBoard event files in RUN/tensorboard "
        "too (pip install 'archviz[tensorboard]') [default: csv].")], None),
    "seeds": (Annotated[int, typer.Option(
        "--seeds", min=1, max=MAX_COUNT, help="Train this many runs, seeds SEED, SEED+1, ..., each in -o/seed-K; "
        "the tables give mean ± std.")], 1),
}


def train_options(*, own: tuple[str, ...] = ()):
    """Give a command every option of TRAIN_OPTIONS (but those in `own`, which it declares itself), handed to it as
    one TrainOptions in its `options` parameter: train, compare and sweep take the same options, declared once."""
    import inspect

    shared = [name for name in TRAIN_OPTIONS if name not in own]

    def decorate(command):
        signature = inspect.signature(command, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.name != "options"]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=TRAIN_OPTIONS[name][0],
                                   default=TRAIN_OPTIONS[name][1]) for name in shared]
        first_option = next((i for i, p in enumerate(kept) if p.default is not inspect.Parameter.empty), len(kept))
        parameters = kept[:first_option] + added + kept[first_option:]
        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters]

        @functools.wraps(command)
        def wrapper(**values):
            from archviz.train.options import TrainOptions
            from archviz.train.threads import passive_openmp

            passive_openmp()  # before torch loads: OpenMP reads it once (archviz/train/threads.py)
            options = TrainOptions(**{name: values.pop(name) for name in shared})
            return command(**values, options=options)

        wrapper.__signature__ = signature.replace(parameters=parameters)
        wrapper.__annotations__ = {**{p.name: p.annotation for p in parameters}}
        del wrapper.__wrapped__  # typer reads the signature above, not the command's
        return wrapper

    return decorate


# pretrain shares these options of train (the same declarations)
DatasetOpt, DataOpt, EpochsOpt, BatchSizeOpt, LrOpt, OptimizerOpt, ScheduleOpt, WeightDecayOpt, AugmentOpt, AdaptOpt, \
    DeviceOpt, TrainSeedOpt, ThreadsOpt, CompileOpt = (TRAIN_OPTIONS[name][0] for name in (
        "dataset", "data", "epochs", "batch_size", "lr", "optimizer", "schedule", "weight_decay", "augment", "adapt",
        "device", "seed", "threads", "compile"))
ResumeOpt = Annotated[bool, typer.Option(
    "--resume", help="Continue the run in -o exactly where it stopped (with its own settings).")]


@app.command(short_help="Train a model on local data (digits, MNIST, CIFAR-10, image folders).")
@user_errors
@train_options()
def train(
    model: Annotated[str, typer.Argument(help="A zoo name (see `archviz list`) or a spec file (my_net.yaml).")],
    options: TrainOptions,
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", help="The run folder [default: runs/MODEL-DATASET-TIME].")] = None,
    resume: ResumeOpt = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=(
        "Train in -o even when it holds other files (none is replaced) or a run (trained anew)."))] = False,
):
    """Train a zoo model or spec file; write metrics, a per-class report, the confusion matrix and checkpoints.

    Ctrl-C saves a checkpoint and exits with status 130; --resume -o FOLDER continues it exactly. Data-parallel on
    several GPUs or CPU processes: torchrun --nproc-per-node N -m archviz.cli train ... (only rank 0 prints and
    writes; --batch-size is per process).
    """
    from archviz.train.distributed import is_main_process
    from archviz.train.loop import train as run_training
    from archviz.train.run import TrainingInterrupted, summary_text

    try:
        if options.seeds > 1:
            return _train_seeds(model, options, output=output, resume=resume, overwrite=overwrite)
        result = run_training(model, **options.run_kwargs(), output=output, resume=resume, overwrite=overwrite)
    except TrainingInterrupted as stopped:
        if is_main_process():
            _echo(f"archviz: {stopped}", err=True)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        _echo("archviz: interrupted at once; last.pt in the run folder is the last checkpoint saved, if any",
                   err=True)
        raise typer.Exit(130) from None
    if result.rank == 0:
        _write(summary_text(result))


def _train_seeds(model: str, options: TrainOptions, *, output: str | None, resume: bool, overwrite: bool) -> None:
    """train --seeds N: a run per seed in -o/seed-K, each run's summary, then one table with mean ± std."""
    from archviz.train.compare import mean_row, row_of, table, train_seeds
    from archviz.train.distributed import is_main_process
    from archviz.train.run import default_folder, summary_text

    folder = Path(output) if output is not None else default_folder(model, options.dataset)
    results = train_seeds(model, output=folder, resume=resume, overwrite=overwrite, **options.train_kwargs())
    if not is_main_process():
        return
    for result in results:
        _write(summary_text(result))
    rows = [row_of(f"seed {result.settings.seed}", result) for result in results]
    rows.append(mean_row(f"mean of {len(results)}", results))
    _console().print(table(rows, title=f"{model} on {options.dataset}, {len(results)} seeds"))


@app.command("export-spec", short_help="Write the architecture as a spec YAML file (from any model archviz reads).")
@user_errors
def export_spec(
    model: ModelArg,
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", help="The .yaml file to write. Default: the spec on stdout.")] = None,
    input: InputOpt = None,
    set_: SetOpt = None,
    kwargs: KwargsOpt = None,
):
    """Write the model as a spec in archviz's language: groups as sequentials, repeated groups as blocks, residual
    and inception joins as branches. `archviz inspect` of the file gives the same figures as the model."""
    from pathlib import Path

    import archviz
    from archviz.output import write_atomic
    from archviz.render.spec_yaml import graph_to_spec

    graph = archviz.load(_resolve(model), input=input, overrides=parse_overrides(set_), kwargs=_kwargs(kwargs))
    text = graph_to_spec(graph, origin=model)
    if output is None:
        _write(text)
        return
    if Path(output).resolve() == Path(model).resolve():
        raise ArchvizError(f"writing {output!r} would replace the model read; name another file with -o")
    _echo(str(write_atomic(output, text)))


@app.command(short_help="Train several models under the same settings; one table of accuracy against cost.")
@user_errors
@train_options()
def compare(
    models: Annotated[list[str], typer.Argument(help="Two or more zoo names or spec files.")],
    options: TrainOptions,
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", help="The folder of the runs [default: runs/compare-DATASET-TIME].")] = None,
    html: Annotated[Optional[str], typer.Option(
        "--html", help="The HTML comparison (accuracy against MACs and params, learning curves, per-class reports) "
        "[default: compare.html in the -o folder].")] = None,
):
    """Train each model with the same options and seed (every option of `archviz train`); print params, MACs,
    accuracy, time, images/s and peak memory, and write an HTML comparison."""
    from archviz.train.compare import compare as run_compare, noise_note, table
    from archviz.train.distributed import is_main_process

    rows = run_compare(models, output=output, html=html, announce=lambda text: _echo(text),
                       **options.train_kwargs())
    if is_main_process():
        _console().print(table(rows, title=f"{', '.join(models)} on {options.dataset}", rank=True))
        _echo(noise_note(rows))


@app.command(short_help="Train one model over a grid of learning rates and batch sizes.")
@user_errors
@train_options(own=("lr", "batch_size"))
def sweep(
    model: Annotated[str, typer.Argument(help="A zoo name or a spec file.")],
    options: TrainOptions,
    lr: Annotated[str, typer.Option("--lr", help="Learning rates, comma-separated.")] = "1e-3,3e-3,1e-2",
    batch_size: Annotated[str, typer.Option("--batch-size", help="Batch sizes, comma-separated.")] = "32,64",
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", help="The folder of the runs [default: runs/sweep-MODEL-DATASET-TIME].")] = None,
):
    """Train every (learning rate, batch size) pair with the other options of `archviz train`; print the runs best
    first and the command of the best, with every option the runs were trained with."""
    from archviz.train.compare import parse_list, sweep as run_sweep, table, train_command
    from archviz.train.distributed import is_main_process

    rows = run_sweep(model, lrs=parse_list(lr, float, "--lr"), batch_sizes=parse_list(batch_size, int, "--batch-size"),
                     output=output, announce=lambda text: _echo(text), **options.train_kwargs())
    if is_main_process():
        _console().print(table(rows, title=f"{model} on {options.dataset}, best first (lowest validation loss)"))
        _echo("best: " + train_command(model, rows[0], options))


TrainedModelArg = Annotated[str, typer.Argument(help=(
    "A zoo name, spec file or other model source (as for inspect), or a run folder of archviz train."))]
WeightsOpt = Annotated[Optional[str], typer.Option(
    "--weights", "-w", help="A run folder of archviz train (its best.pt), a checkpoint, or a state dict (.pth) whose "
    "names are the model's layer paths (torchvision's for the zoo's torchvision models). Left out: random "
    "initialisation from --seed, to compare with.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the random initialisation when --weights is left out.")]
PictureOpt = Annotated[Optional[str], typer.Option(
    "--output", "-o", help="Write the picture to this PNG file; without it, it is drawn in the terminal.")]
ImageOpt = Annotated[Optional[str], typer.Option("--image", help="An image file (PNG, JPEG, ...) to feed the model.")]
SampleOpt = Annotated[Optional[int], typer.Option(
    "--sample", min=0, help="Feed image N of the run's validation split instead of --image.")]


def _input_image(trained, image: str | None, sample: int | None):
    from archviz.inside.images import dataset_sample, read_image

    if (image is None) == (sample is None):
        raise ArchvizError("give one input: --image FILE or --sample N (an image of the run's dataset)")
    return read_image(trained, image) if image is not None else dataset_sample(trained, sample)


def _write_picture(output: str, png: bytes) -> None:
    from archviz.output import write_atomic
    from archviz.render.pictures import png_size

    width, height = png_size(png)
    _echo(f"wrote {write_atomic(output, png)} ({width}x{height} PNG)", err=True)


@app.command(short_help="A convolution's learned kernels as an image grid.")
@user_errors
def filters(
    model: TrainedModelArg,
    weights: WeightsOpt = None,
    layer: Annotated[Optional[str], typer.Option("--layer", "-l", help="A convolution [default: the first].")] = None,
    per_channel: Annotated[bool, typer.Option(
        "--per-channel", help="One tile per filter and input channel instead of each filter averaged over its "
        "input channels (layers with other than 1 or 3 input channels).")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_COUNT, help="Filters shown at most.")] = 64,
    seed: SeedOpt = 0,
    output: PictureOpt = None,
):
    """Draw a convolution's kernels, each scaled to its own largest |weight|: in colour when it reads 3 channels,
    else blue (negative) to red (positive). First layers learn edges and blobs; random ones are noise."""
    from archviz.inside.filters import filter_grid
    from archviz.inside.trained import load_trained
    from archviz.render.inside import grids_png, print_grids

    grid = filter_grid(load_trained(model, weights, seed=seed), layer, per_channel=per_channel, limit=limit)
    if output:
        _write_picture(output, grids_png([grid]))
    else:
        print_grids(_console(), [grid])


@app.command(short_help="The feature maps chosen layers make of one image.")
@user_errors
def activations(
    model: TrainedModelArg,
    weights: WeightsOpt = None,
    image: ImageOpt = None,
    sample: SampleOpt = None,
    layers: Annotated[Optional[str], typer.Option(
        "--layers", help="Comma-separated layer names [default: an early, a middle and the last spatial "
        "layer].")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_COUNT, help="Channels shown per layer, the most active.")] = 32,
    seed: SeedOpt = 0,
    output: PictureOpt = None,
):
    """Run one image through the model and draw the outputs of chosen layers, captured with forward hooks (removed
    afterwards). Early layers respond to edges; later ones to larger parts, at a coarser grid."""
    from archviz.inside.activations import activation_grid, capture_maps
    from archviz.inside.layers import default_activation_layers
    from archviz.inside.trained import load_trained
    from archviz.render.inside import grids_png, print_grids

    trained = load_trained(model, weights, seed=seed)
    picture = _input_image(trained, image, sample)
    names = [name.strip() for name in layers.split(",") if name.strip()] if layers else \
        [node.name for node in default_activation_layers(trained.graph)]
    maps, logits = capture_maps(trained, picture, names)
    grids = [activation_grid(layer_maps, limit=limit) for layer_maps in maps]
    console = _console()
    for line in [f"input: {picture.source}", f"weights: {trained.weights}", *_predictions(trained, logits)]:
        console.print(line, highlight=False, style="dim" if output else None)
    if output:
        _write_picture(output, grids_png(grids))
    else:
        print_grids(console, grids)


def _predictions(trained, logits) -> list[str]:
    import torch

    from archviz.inside.cam import TOP
    from archviz.render.inside import prediction_lines

    if not trained.classes:
        return ["output: the backbone's features (no classifier)"]
    probabilities = torch.softmax(logits[0].float(), dim=0)
    top = torch.topk(probabilities, min(TOP, len(probabilities)))
    return prediction_lines(trained, list(zip(top.indices.tolist(), top.values.tolist())))


class _CamMethod(enum.StrEnum):
    GRADCAM = "gradcam"
    GRADCAM_PLUS_PLUS = "gradcam++"


@app.command(short_help="A class-activation map (Grad-CAM, Grad-CAM++) over one image.")
@user_errors
def cam(
    model: TrainedModelArg,
    weights: WeightsOpt = None,
    image: ImageOpt = None,
    sample: SampleOpt = None,
    layer: Annotated[str, typer.Option(
        "--layer", "-l", help="auto: the last layer with a spatial output, before pooling; or a layer name.")] = "auto",
    class_: Annotated[Optional[str], typer.Option(
        "--class", help="A class index or name [default: the predicted class].")] = None,
    method: Annotated[_CamMethod, typer.Option("--method")] = _CamMethod.GRADCAM,
    seed: SeedOpt = 0,
    output: PictureOpt = None,
):
    """Where in the image the evidence for a class lies, seen from one layer: the layer's maps weighted by the
    gradient of the class score (Grad-CAM), or by its positive parts (Grad-CAM++), upsampled to the image."""
    from archviz.inside.cam import CamMethod, class_activation_map
    from archviz.inside.layers import auto_cam_layer, find_layer
    from archviz.inside.trained import load_trained
    from archviz.render.inside import cam_lines, cam_png, print_cam

    trained = load_trained(model, weights, seed=seed)
    picture = _input_image(trained, image, sample)
    node = auto_cam_layer(trained.graph) if layer == "auto" else find_layer(trained.graph, layer)
    reason = " (auto: the last layer with a spatial output, before pooling)" if layer == "auto" else ""
    result = class_activation_map(trained, picture, layer=node.name, target=_class_index(trained, class_),
                                  method=CamMethod(method.value))
    console = _console()
    for line in cam_lines(trained, picture, result, layer_reason=reason):
        console.print(line, highlight=False)
    if output:
        _write_picture(output, cam_png(trained, picture, result))
    else:
        print_cam(console, picture, result)


class _WalkFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"


@app.command(short_help="How one output value of one layer is computed, number by number.")
@user_errors
def walkthrough(
    model: TrainedModelArg,
    weights: WeightsOpt = None,
    image: ImageOpt = None,
    sample: SampleOpt = None,
    layer: Annotated[str, typer.Option("--layer", "-l", help="A 2-d convolution, max or average pooling, linear or "
                                       "batch norm layer.")] = ...,
    at: Annotated[Optional[str], typer.Option("--at", help="The output position C,Y,X (F for a vector output) "
                                              "[default: the centre of channel 0].")] = None,
    format: Annotated[_WalkFormat, typer.Option("--format", "-f", help="Output format.")] = _WalkFormat.TABLE,
    seed: SeedOpt = 0,
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", help="Also write the input picture with the position's receptive window outlined to this "
        "PNG file.")] = None,
):
    """Run one image through the model and spell out how one value of a layer's output comes from its input: the
    patch and the kernel, their products, the sum and the bias (pooling: the window and its max or mean; linear: the
    dot product; batch norm: the normalisation), the next activation, the course's ([W-F+2P]/S)+1 and the receptive
    field, beside the value torch computed there (a forward hook)."""
    from archviz.inside.trained import load_trained
    from archviz.inside.walkthrough import parse_position, walkthrough as walk_through
    from archviz.render.walkthrough import walkthrough_dict, walkthrough_png, walkthrough_view

    position = parse_position(at) if at is not None else None
    trained = load_trained(model, weights, seed=seed)
    picture = _input_image(trained, image, sample)
    walk = walk_through(trained, picture, layer=layer, at=position)
    if format == _WalkFormat.JSON:
        _write(json.dumps(walkthrough_dict(walk), indent=1) + "\n")
    else:
        _console().print(walkthrough_view(walk), highlight=False)
    if output:
        _write_picture(output, walkthrough_png(walk, picture.picture))


def _class_index(trained, given: str | None) -> int | None:
    from archviz.errors import UnknownNameError, closest

    if given is None:
        return None
    count = len(trained.classes)
    if given in trained.classes:
        return trained.classes.index(given)
    if given.lstrip("-").isdigit():
        if 0 <= int(given) < count:
            return int(given)
        raise UnknownNameError(f"--class {given}: the model has {count} classes, 0 to {count - 1}")
    raise UnknownNameError(f"--class {given!r}: not a class name of this model{closest(given, trained.classes)}; "
                           f"or give an index, 0 to {count - 1}")


RunArg = Annotated[str, typer.Argument(help="A run folder of archviz train (or one of its checkpoints).")]
CheckpointOpt = Annotated[Optional[_Checkpoint], typer.Option(
    "--checkpoint", help="The run's best.pt (the lowest validation loss, which its test figures are for) or last.pt "
    "[default: best].")]
ScoringDeviceOpt = Annotated[_TrainDevice, typer.Option(
    "--device", help="Where the images are scored: auto picks CUDA when available.")]


class _UseFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


@app.command(short_help="A trained run's most probable classes for image files or folders.")
@user_errors
def predict(
    run: RunArg,
    images: Annotated[list[str], typer.Argument(help="Image files (PNG, JPEG, ...) and folders of them.")],
    top: Annotated[int, typer.Option("--top", "-k", min=1, max=MAX_COUNT, help="Classes shown per image.")] = 5,
    format: Annotated[_UseFormat, typer.Option("--format", "-f", help="Output format.")] = _UseFormat.TABLE,
    checkpoint: CheckpointOpt = None,
    device: ScoringDeviceOpt = _TrainDevice.AUTO,
):
    """Print the most probable classes of each image, with their probabilities (softmax). Each image is decoded and
    prepared as the run prepared its own (its size and channels, the model's input steps, its normalisation); a
    folder gives one row per image in it (sorted; other files skipped). An unreadable image is an error naming it,
    before anything is printed."""
    from archviz.train.predict import predict as run_predict, predictions_csv, predictions_dict, predictions_text

    result = run_predict(run, images, top=top, checkpoint=checkpoint, device=device)
    if format == _UseFormat.JSON:
        _write(json.dumps(predictions_dict(result), indent=1) + "\n")
    elif format == _UseFormat.CSV:
        _write(predictions_csv(result))
    else:
        _write(predictions_text(result))


@app.command(short_help="A trained run's accuracy, per-class report and confusion on its test split or a dataset.")
@user_errors
def evaluate(
    run: RunArg,
    dataset: Annotated[Optional[str], typer.Option(
        "--dataset", help="Another dataset in a format train reads (mnist:PATH, cifar10:PATH, folder:PATH, digits); "
        "its classes are matched to the run's by name [default: the run's own].")] = None,
    split: Annotated[str, typer.Option("--split", help="train, val or test.")] = "test",
    format: Annotated[_WalkFormat, typer.Option("--format", "-f", help="Output format.")] = _WalkFormat.TABLE,
    checkpoint: CheckpointOpt = None,
    device: ScoringDeviceOpt = _TrainDevice.AUTO,
):
    """Score the run's weights on a split of its dataset, or of another one: accuracy, loss, the per-class report
    (precision, recall, F1, support) and the confusion matrix. On the run's own test split with best.pt the figures
    are those the run recorded, and it says so."""
    from archviz.train.evaluate import evaluate_run, evaluation_dict, evaluation_text

    result = evaluate_run(run, dataset=dataset, split=split, checkpoint=checkpoint, device=device)
    if format == _WalkFormat.JSON:
        _write(json.dumps(evaluation_dict(result), indent=1) + "\n")
    else:
        _write(evaluation_text(result))


@app.command(short_help="Train a backbone on a self-supervised pretext task (labels ignored).")
@user_errors
def pretrain(
    model: Annotated[str, typer.Argument(help="A zoo name or spec file; its classifier is left out.")],
    task: Annotated[_Task, typer.Option("--task", help="The pretext task.")],
    dataset: DatasetOpt = "digits",
    data: DataOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchSizeOpt = None,
    lr: LrOpt = None,
    optimizer: OptimizerOpt = None,
    schedule: ScheduleOpt = None,
    weight_decay: WeightDecayOpt = None,
    augment: AugmentOpt = None,
    adapt: AdaptOpt = None,
    device: DeviceOpt = _TrainDevice.AUTO,
    seed: TrainSeedOpt = None,
    seeds: Annotated[int, typer.Option(
        "--seeds", min=1, max=MAX_COUNT, help="Train this many runs, seeds SEED, SEED+1, ..., into -o/seed-K; probe averages "
        "them.")] = 1,
    threads: ThreadsOpt = None,
    compile: CompileOpt = False,
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", help="The run folder [default: runs/MODEL-DATASET-TASK-TIME].")] = None,
    resume: ResumeOpt = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=(
        "Train in -o even when it holds other files (none is replaced) or a run (trained anew)."))] = False,
):
    """Train the model's backbone (without its classifier) on a pretext task whose labels come from the images:
    rotation (which of 4 turns), jigsaw (which shuffle of 3x3 tiles), context (where a patch lies beside the centre),
    colorization (colours from lightness), deepcluster (k-means pseudo-labels), instdisc (each image its own class,
    against a memory bank), simclr (two views of an image attract, others repel). Then: archviz probe RUN."""
    from archviz.train.threads import passive_openmp

    passive_openmp()  # before torch loads
    from archviz.pretrain.loop import pretrain as run_pretext
    from archviz.train.run import TrainingInterrupted

    options = dict(task=task.value, dataset=dataset, data=data, epochs=epochs, batch_size=batch_size, lr=lr,
                   optimizer=optimizer and optimizer.value, schedule=schedule and schedule.value,
                   weight_decay=weight_decay, augment=augment, adapt=adapt and adapt.value, device=device.value,
                   threads=threads, compile=compile, resume=resume, overwrite=overwrite)
    first = 0 if seed is None else seed
    try:
        if seeds == 1:
            results = [run_pretext(model, seed=seed, output=output, **options)]
        else:
            from archviz.train.run import default_folder
            from archviz.train.run_folder import seed_run

            folder = Path(output) if output else default_folder(model, dataset, task.value)
            results = [run_pretext(model, seed=first + k, output=seed_run(folder, first + k), **options)
                       for k in range(seeds)]
    except TrainingInterrupted as stopped:
        _echo(f"archviz: {stopped}", err=True)
        raise typer.Exit(130) from None
    for result in results:
        _echo(f"{result.task}: {result.test_split} pretext accuracy {result.test_accuracy:.2%} with best.pt "
                   f"(epoch {result.best_epoch}); run folder {result.folder}")
    _echo(f"next: archviz probe {Path(results[0].folder).parent if seeds > 1 else results[0].folder}")


@app.command(short_help="Measure a pretrained backbone with the labels: linear or kNN probes per block.")
@user_errors
def probe(
    run: Annotated[str, typer.Argument(help="A run folder of archviz pretrain (or one holding seed-* runs).")],
    dataset: Annotated[Optional[str], typer.Option(
        "--dataset", help="The labelled dataset [default: the run's].")] = None,
    layers: Annotated[Optional[str], typer.Option(
        "--layers", help="Comma-separated layers [default: the end of every stage and the backbone's "
        "output].")] = None,
    kind: Annotated[_ProbeKind, typer.Option("--kind", help="linear: logistic regression; knn: 20 nearest "
                                             "neighbours by cosine.")] = _ProbeKind.LINEAR,
    finetune: Annotated[bool, typer.Option(
        "--finetune", help="Also train the whole network from the pretext weights with the labels.")] = False,
    threads: ThreadsOpt = None,
):
    """For each block, the frozen features of the pretext backbone feed a classifier trained on the labels; its test
    accuracy beside the same architecture at random initialisation and trained with labels under the same budget
    (kept in RUN/supervised). Writes RUN/probe-KIND.json."""
    from archviz.train.threads import passive_openmp

    passive_openmp()  # before torch loads
    from archviz.pretrain.probe import probe as run_probe
    from archviz.render.probe import probe_table
    from archviz.train.progress import reporter

    names = [name.strip() for name in layers.split(",") if name.strip()] if layers else None
    if layers is not None and not names:
        raise ArchvizError("--layers: name at least one layer")
    show = reporter(None, stream=sys.stderr)  # progress on stderr: stdout is the table
    try:
        result = run_probe(run, dataset=dataset, layers=names, kind=kind.value, finetune=finetune, threads=threads,
                           progress=show, say=lambda line: show.line(f"archviz: {line}"))
    finally:
        show.close()
    _write(probe_table(result))




@app.command(short_help="Run the model for real: peak memory, per-layer time, images/s (measured).")
@user_errors
def profile(
    model: ModelArg,
    input: InputOpt = None,
    batch: BatchOpt = 1,
    set_: SetOpt = None,
    kwargs: KwargsOpt = None,
    train: Annotated[bool, typer.Option("--train", help="Measure a training step: forward, loss, backward, "
                                        "optimizer step (default: forward only, under no_grad).")] = False,
    optimizer: Annotated[Optimizer, typer.Option("--optimizer", help=(
        "With --train; sgd is plain SGD, momentum SGD with momentum 0.9 (archviz train's sgd)."))] = Optimizer.SGD,
    amp: Annotated[Optional[Amp], typer.Option("--amp", help="Autocast to bf16 or fp16 (fp16 with a "
                                                       "GradScaler on CUDA).")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, or cuda (cuda:N).")] = "cpu",
    checkpointing: CheckpointingOpt = None,
    warmup: Annotated[int, typer.Option("--warmup", min=0, max=MAX_COUNT, help="Untimed iterations first.")] = 1,
    iterations: Annotated[int, typer.Option("--iterations", "-n", min=1, max=MAX_COUNT,
                                            help="Timed iterations (medians are shown).")] = 3,
    json_: Annotated[bool, typer.Option("--json", help="The measurement as JSON on stdout.")] = False,
):
    """Run the model on random input with random weights and measure the peak memory of tensors, the time per
    iteration and per leaf layer (forward and backward), and images/s. torchvision: and timm: models are built
    without downloading weights."""
    from archviz.profile.run import measure_model
    from archviz.profile.view import measurement_json, measurement_view

    if checkpointing is not None and not train:
        raise ArchvizError("--checkpointing saves memory in a training step: add --train")
    measurement = measure_model(_resolve(model), input_shape=input, overrides=parse_overrides(set_),
                                kwargs=_kwargs(kwargs), batch=batch, train=train, optimizer=optimizer.value,
                                amp=amp and amp.value, device=device, warmup=warmup, iterations=iterations,
                                checkpointing=checkpointing)
    predicted = _predicted_peak(model, input, set_, kwargs, batch=batch, optimizer=optimizer.value if train else None,
                                amp=amp, device=device, checkpointing=checkpointing)
    if json_:
        _write(measurement_json(measurement, model=model, predicted=predicted))
    else:
        _console().print(measurement_view(measurement, model=model, predicted=predicted))


def _predicted_peak(model, input, set_, kwargs, *, batch: int, optimizer: str | None, amp, device: str,
                    checkpointing: int | None = None):
    """The same run's peak by formula: a training step's (analysis/training.py) or the inference pass's weights
    and peak activations (analysis/memory.py), as torch runs them on the CPU."""
    from archviz.profile.view import Prediction

    if amp is not None and optimizer is None:
        return Prediction(None, "an inference pass under autocast is not predicted yet")
    on_cpu = device == "cpu"
    report = _inspect(model, input, batch, set_, DTypeChoice.FLOAT32, False, kwargs=kwargs, optimizer=optimizer,
                      device="cpu" if on_cpu and optimizer is None else None, amp=amp and amp.value,
                      checkpointing=checkpointing)
    totals = report.totals
    note = "" if on_cpu else "predicted as torch runs it on the CPU"
    if optimizer is None:
        latency = report.latency
        timed = {} if latency is None else {
            "seconds": latency.seconds, "layer_seconds": {t.name: t.seconds for t in latency.layers if t.predicted}}
        return Prediction(totals.param_bytes + totals.peak_activation_bytes, note, **timed)
    memory = totals.training_memory
    if memory.uncounted:
        note = "; ".join(filter(None, [note, f"a lower bound: {len(memory.uncounted)} layers without a formula"]))
    return Prediction(memory.peak_bytes, note)


@app.command(short_help="Measure this machine's CPU for latency predictions (inspect --device cpu).")
@user_errors
def calibrate(
    again: Annotated[bool, typer.Option("--again", help="Measure again even where figures for this CPU, torch "
                                                       "version and thread count are cached.")] = False,
):
    """Measure the local CPU's matrix-multiply FLOP/s, memory and cache bandwidth, per-op overhead, pooling and
    depthwise rates (a few seconds), cache them, and print them: the device `inspect --device cpu` predicts for."""
    from archviz.profile.calibrate import local_device
    from archviz.render.devices import device_table

    _console().print(device_table(local_device(recalibrate=again)))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
