"""`archviz pick`: the backbones that fit a budget at the user's input, by published ImageNet top-1, and the Pareto
front of accuracy against MACs.

Candidates are the zoo, torchvision's classification builders and, when asked for by a name pattern, timm's
architectures. Every figure (params, MACs, memory, latency) is archviz's own computation at the given input
(archviz.inspect: formulas; torchvision and timm models are traced on the meta device); the accuracy is the published
one, cited (archviz/analysis/published.py). Per torchvision builder one accuracy is shown: the best published top-1
among its weights evaluated at the input's size (crop = H = W), else the best at any size with its crop named.
A zoo model whose spec names a torchvision builder (`torchvision: resnet50`, the same network:
tests/test_zoo_torchvision.py) is shown with that builder's accuracy. Each analysis is cached on disk
(archviz/cache.py) per model, input and options, so a second pick is fast.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from archviz.analysis.published import NO_TIMM_ACCURACY, PublishedAccuracy, torchvision_accuracies
from archviz.cache import cached_json, content_key
from archviz.errors import ArchvizError, MissingDependencyError, SpecError

IMAGENET_CLASSES = 1000
IMAGENET_INPUT = (3, 224, 224)  # the input --task imagenet analyses at unless --input says otherwise
MAX_TIMM_MODELS = 200  # timm architectures one pick analyses (about a second each the first time)
PICK_CACHE_FORMAT = 1  # bump when what a cached analysis holds changes


class Source(enum.StrEnum):
    ZOO = "zoo"
    TORCHVISION = "torchvision"
    TIMM = "timm"


class Task(enum.StrEnum):
    IMAGENET = "imagenet"  # 1000-way ImageNet-1K classification: the only task with published accuracies here


DEFAULT_SOURCES = (Source.ZOO, Source.TORCHVISION)  # timm only on request: ~1,300 architectures, no accuracies


def default_sources() -> list[Source]:
    """The zoo, and torchvision where it is installed."""
    from archviz.analysis.published import torchvision_models_dir

    return [source for source in DEFAULT_SOURCES if source != Source.TORCHVISION or torchvision_models_dir()]


@dataclass(frozen=True)
class Budget:
    """The limits a model must stay within; None: no limit on that figure."""

    max_params: int | None = None
    max_macs: int | None = None  # per image
    max_memory_bytes: int | None = None  # training step's peak with a train optimizer, else inference
    max_latency_s: float | None = None  # the roofline's forward pass of the whole batch on the device


@dataclass(frozen=True)
class PickOptions:
    """What every candidate is analysed at."""

    input: tuple[int, ...] = IMAGENET_INPUT
    batch: int = 1
    optimizer: str | None = None  # a training step's memory (sgd, momentum, adam, adamw); None: inference memory
    device: str | None = None  # the roofline's device for latency; None: no latency
    memory: bool = False  # whether to compute memory at all


@dataclass(frozen=True)
class Figures:
    """archviz's own figures of one model at the pick's input."""

    params: int
    macs: int  # per image
    classes: int | None  # the output's size when it is a vector of class scores
    memory_bytes: int | None = None
    latency_s: float | None = None
    latency_partial: bool = False  # some layers had no prediction: the latency is a lower bound


@dataclass(frozen=True)
class Candidate:
    name: str  # as archviz names it: resnet50 (zoo), torchvision:resnet50, timm:resnet50
    source: Source
    accuracy: PublishedAccuracy | None
    accuracy_note: str  # how the accuracy relates to this model, or why there is none
    same_as: str | None = None  # a zoo model's torchvision twin, its spec's `torchvision:` builder
    variants: tuple[PublishedAccuracy, ...] = ()  # every published weights of its builder, best first


@dataclass(frozen=True)
class Row:
    candidate: Candidate
    figures: Figures
    over: tuple[str, ...]  # the budgets it exceeds: params, macs, memory, latency
    on_front: bool = False  # on the Pareto front of published top-1 against MACs among the fitting rows
    on_latency_front: bool = False  # the same against predicted latency (with a device)

    @property
    def fits(self) -> bool:
        return not self.over


@dataclass(frozen=True)
class Left:
    """A candidate that could not be put against the budget, and why."""

    candidate: Candidate
    reason: str
    not_task: bool  # not an ImageNet classifier at all (as opposed to: not analysable at this input)


@dataclass(frozen=True)
class Pick:
    options: PickOptions
    budget: Budget
    sources: tuple[Source, ...]
    fitting: tuple[Row, ...]  # sorted: published top-1 best first, then the rows without one by MACs
    over_budget: tuple[Row, ...]
    left: tuple[Left, ...]
    twins: tuple[tuple[str, str], ...] = ()  # (zoo model, torchvision model): the same network, analysed once


def parse_count(text: str, *, what: str) -> int:
    """'1G' -> 1,000,000,000; '25M', '4.1e9', '2.5K', '1,000' and plain integers too.

    >>> parse_count("1G", what="--max-macs"), parse_count("4.1e9", what="--max-macs"), parse_count("25M", what="x")
    (1000000000, 4100000000, 25000000)
    """
    match = re.fullmatch(r"\s*(\d[\d,_]*(?:\.\d+)?(?:e\d{1,2})?)\s*([KMGT]?)\s*", str(text), re.I)
    if not match:
        raise SpecError(f"{what}: {text!r} is not a count (expected a number, optionally with K, M, G or T: 1G, "
                        "25M, 4.1e9)")
    scale = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[match[2].upper()]
    value = int(float(match[1].replace(",", "").replace("_", "")) * scale)
    if value < 1:
        raise SpecError(f"{what}: {text!r} is less than one")
    return value


def parse_milliseconds(text: str, *, what: str) -> float:
    """'5' or '5ms' -> 0.005 seconds; '0.5 s' -> 0.5.

    >>> parse_milliseconds("5", what="--max-latency"), parse_milliseconds("0.5s", what="--max-latency")
    (0.005, 0.5)
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|us|µs)?\s*", str(text), re.I)
    if not match or float(match[1]) <= 0:
        raise SpecError(f"{what}: {text!r} is not a positive time (milliseconds: 5, 12.5ms, or 0.5s)")
    return float(match[1]) * {"ms": 1e-3, "s": 1.0, "us": 1e-6, "µs": 1e-6}[(match[2] or "ms").lower()]


def candidates(sources: Iterable[Source], *, input: tuple[int, ...],
               timm_pattern: str | None = None) -> list[Candidate]:
    """Every model of the sources, with its published top-1 where there is one: zoo, then torchvision, then timm."""
    sources = tuple(sources)
    published = torchvision_accuracies() if Source.ZOO in sources or Source.TORCHVISION in sources else {}
    if Source.TORCHVISION in sources and not published:
        raise MissingDependencyError("--source torchvision needs torchvision: pip install torchvision")
    found = []
    if Source.ZOO in sources:
        found += _zoo_candidates(published, input)
    if Source.TORCHVISION in sources:
        found += [Candidate(f"torchvision:{builder}", Source.TORCHVISION, *chosen_accuracy(weights, input),
                            variants=weights) for builder, weights in published.items()]
    if Source.TIMM in sources:
        found += [Candidate(f"timm:{name}", Source.TIMM, None, NO_TIMM_ACCURACY) for name in timm_names(timm_pattern)]
    return found


def chosen_accuracy(weights: tuple[PublishedAccuracy, ...], input: tuple[int, ...]) -> tuple[PublishedAccuracy, str]:
    """The best top-1 among weights evaluated at the input's size; else the best, with the size it was at.

    >>> from archviz.analysis.published import PublishedAccuracy as P
    >>> at = lambda top1, crop: P("m", f"W.{top1}", top1, None, crop, None, "", "")
    >>> chosen_accuracy((at(85.3, 384), at(81.9, 224)), (3, 224, 224))[0].top1
    81.9
    >>> chosen_accuracy((at(85.3, 384), at(81.9, 224)), (3, 160, 160))
    (PublishedAccuracy(builder='m', weights='W.85.3', top1=85.3, top5=None, crop_size=384, num_params=None, \
recipe='', source=''), 'published at 384x384, analysed at 160x160')
    """
    size = input[1] if len(input) == 3 and input[1] == input[2] else None
    matching = [w for w in weights if w.crop_size == size]
    if matching:
        return max(matching, key=lambda w: w.top1), ""
    best = max(weights, key=lambda w: w.top1)
    crop = f"{best.crop_size}x{best.crop_size}" if best.crop_size else "its own size"
    return best, f"published at {crop}, analysed at {'x'.join(map(str, input[1:]))}"


def _zoo_candidates(published: dict[str, tuple[PublishedAccuracy, ...]], input: tuple[int, ...]) -> list[Candidate]:
    from archviz.spec.zoo import load_zoo, zoo_names

    found = []
    for name in zoo_names():
        builder = load_zoo(name).torchvision
        if builder in published:
            accuracy, note = chosen_accuracy(published[builder], input)
            note = "; ".join(filter(None, [f"the network of torchvision:{builder}", note]))
            found.append(Candidate(name, Source.ZOO, accuracy, note, same_as=f"torchvision:{builder}",
                                   variants=published[builder]))
        else:
            found.append(Candidate(name, Source.ZOO, None, "no published weights: the zoo's spec names no "
                                   "torchvision builder"))
    return found


def timm_names(pattern: str | None) -> list[str]:
    """timm's architectures matching a glob (timm.list_models); at most MAX_TIMM_MODELS."""
    if not pattern:
        raise SpecError("--source timm needs --timm PATTERN, a glob of timm's architectures ('resnet*', "
                        "'efficientnet_b?'): analysing all ~1,300 takes about half an hour")
    try:
        import timm
    except ModuleNotFoundError:
        raise MissingDependencyError("--source timm needs timm: pip install timm") from None
    names = timm.list_models(pattern)
    if not names:
        raise SpecError(f"--timm {pattern!r}: no timm architecture matches (timm.list_models)")
    if len(names) > MAX_TIMM_MODELS:
        raise SpecError(f"--timm {pattern!r} matches {len(names):,} architectures; narrow it to at most "
                        f"{MAX_TIMM_MODELS}")
    return names


def pick(budget: Budget, options: PickOptions, *, sources: Iterable[Source] = DEFAULT_SOURCES,
         timm_pattern: str | None = None, progress: Callable[[str, int, int], None] | None = None) -> Pick:
    """The candidates of `sources` analysed at `options`, held against `budget`.

    >>> chosen = pick(Budget(max_macs=2 * 10**9), PickOptions(), sources=[Source.ZOO])
    >>> all(row.figures.macs <= 2 * 10**9 for row in chosen.fitting), chosen.left[0].candidate.name
    (True, 'basic_cnn')
    """
    sources = tuple(dict.fromkeys(Source(s) for s in sources))
    found, twins = without_twins(candidates(sources, input=options.input, timm_pattern=timm_pattern))
    analysed = _cached_analysis(options, sources)
    rows, left = [], []
    for index, candidate in enumerate(found):
        if progress is not None:
            progress(candidate.name, index, len(found))
        outcome = analysed(candidate)
        if isinstance(outcome, Left):
            left.append(outcome)
        else:
            rows.append(Row(params_checked(candidate, outcome), outcome, exceeded(outcome, budget)))
    if progress is not None:
        progress("", len(found), len(found))
    fitting = mark_fronts([row for row in rows if row.fits])
    over = [row for row in rows if not row.fits]
    return Pick(options, budget, sources, tuple(ordered(fitting)), tuple(ordered(over)), tuple(left), twins)


def without_twins(found: list[Candidate]) -> tuple[list[Candidate], tuple[tuple[str, str], ...]]:
    """The candidates less the zoo models whose torchvision twin is among them (the same network, held equal by
    tests/test_zoo_torchvision.py: listed once, under torchvision's name), and those pairs (zoo, torchvision)."""
    names = {candidate.name for candidate in found}
    twins = tuple((c.name, c.same_as) for c in found if c.same_as in names)
    kept = [c for c in found if c.same_as not in names]
    return kept, twins


def params_checked(candidate: Candidate, figures: Figures) -> Candidate:
    """The candidate with a note where its published weights hold another number of parameters than the network
    analysed (inception_v3's weights carry the auxiliary classifier, which inference does not run)."""
    import dataclasses

    published = candidate.accuracy.num_params if candidate.accuracy is not None else None
    if published is None or published == figures.params:
        return candidate
    note = f"its weights hold {published:,} params, the network analysed {figures.params:,}"
    return dataclasses.replace(candidate, accuracy_note="; ".join(filter(None, [candidate.accuracy_note, note])))


def exceeded(figures: Figures, budget: Budget) -> tuple[str, ...]:
    """The budgets a model's figures exceed, in the order params, macs, memory, latency."""
    checks = (("params", figures.params, budget.max_params), ("macs", figures.macs, budget.max_macs),
              ("memory", figures.memory_bytes, budget.max_memory_bytes),
              ("latency", figures.latency_s, budget.max_latency_s))
    return tuple(name for name, value, limit in checks if limit is not None and value is not None and value > limit)


def ordered(rows: Iterable[Row]) -> list[Row]:
    """Published top-1 best first (ties: fewer MACs, then name); the rows without one after, by MACs."""
    def key(row: Row):
        accuracy = row.candidate.accuracy
        return (accuracy is None, -(accuracy.top1 if accuracy else 0.0), row.figures.macs, row.candidate.name)

    return sorted(rows, key=key)


def pareto_front(points: dict[str, tuple[float, float]]) -> set[str]:
    """The names whose (cost, accuracy) no other point dominates: none has cost <= and accuracy >= with one of them
    strictly better. Equal points are both on the front.

    >>> sorted(pareto_front({"a": (1, 70), "b": (2, 75), "c": (3, 72), "d": (2, 75)}))
    ['a', 'b', 'd']
    """
    def dominated(cost: float, accuracy: float) -> bool:
        return any(c <= cost and a >= accuracy and (c < cost or a > accuracy) for c, a in points.values())

    return {name for name, (cost, accuracy) in points.items() if not dominated(cost, accuracy)}


def mark_fronts(rows: list[Row]) -> list[Row]:
    """The rows with on_front (top-1 against MACs) and on_latency_front (against latency, where predicted) set; rows
    without a published top-1 are on no front."""
    import dataclasses

    ranked = [row for row in rows if row.candidate.accuracy is not None]
    by_macs = pareto_front({row.candidate.name: (row.figures.macs, row.candidate.accuracy.top1) for row in ranked})
    by_latency = pareto_front({row.candidate.name: (row.figures.latency_s, row.candidate.accuracy.top1)
                               for row in ranked if row.figures.latency_s is not None})
    return [dataclasses.replace(row, on_front=row.candidate.name in by_macs,
                                on_latency_front=row.candidate.name in by_latency) for row in rows]


def _cached_analysis(options: PickOptions, sources: tuple[Source, ...]) -> Callable[[Candidate], Figures | Left]:
    """analyse(), each result cached on disk under the code, the sources' versions, the options and the model: one
    file per model and options, which a change of code or version overwrites rather than adds to."""
    from archviz.format import slug

    options_key = json.dumps(_options_key(options))
    base = hashlib.sha256(json.dumps([PICK_CACHE_FORMAT, _code_key(sources), _versions(sources),
                                      options_key]).encode()).hexdigest()
    file_id = f"{'x'.join(map(str, options.input))}-{hashlib.sha256(options_key.encode()).hexdigest()[:12]}"

    def analysed(candidate: Candidate) -> Figures | Left:
        key = hashlib.sha256(f"{base} {candidate.name}".encode()).hexdigest()
        stored = cached_json(f"pick/{slug(candidate.name)}-{file_id}", key, lambda: analyse(candidate, options))
        if "reason" in stored:
            return Left(candidate, stored["reason"], stored["not_task"])
        return Figures(**stored)

    return analysed


def analyse(candidate: Candidate, options: PickOptions) -> dict:
    """One candidate's figures at the options, as a JSON-able dict; or {"reason", "not_task"} where it cannot be put
    against the budget: not an ImageNet classifier, or not analysable at this input (the error, in words)."""
    import archviz

    wrong_input = _zoo_input_problem(candidate.name) if candidate.source == Source.ZOO else None
    if wrong_input:
        return {"reason": wrong_input, "not_task": True}
    try:
        report = archviz.inspect(candidate.name, input=options.input, batch=options.batch,
                                 optimizer=options.optimizer if options.memory else None, device=options.device)
    except ArchvizError as error:
        return {"reason": f"not analysable at {'x'.join(map(str, options.input))}: {error}", "not_task": False}
    out_shape = report.graph.by_name[report.graph.output].out_shape
    classes = out_shape[0] if len(out_shape) == 1 else None
    if classes != IMAGENET_CLASSES:
        what = f"{classes} classes" if classes else f"a {'x'.join(map(str, out_shape))} tensor"
        return {"reason": f"not an ImageNet-1K classifier: its output is {what}", "not_task": True}
    totals = report.totals
    figures = {"params": totals.params, "macs": totals.macs_per_image, "classes": classes}
    if options.memory:
        figures["memory_bytes"] = (totals.training_memory.peak_bytes if totals.training_memory is not None
                                   else totals.param_bytes + totals.peak_activation_bytes)
    if report.latency is not None:
        figures["latency_s"] = report.latency.seconds
        figures["latency_partial"] = bool(report.latency.not_predicted)
    return figures


def _zoo_input_problem(name: str) -> str | None:
    """Why a zoo model is no ImageNet classifier by its own spec's input (a 1x32x32 digit model); None if it takes
    3-channel images."""
    from archviz.graph.build import parse_input
    from archviz.spec.zoo import load_zoo

    spec = load_zoo(name)
    try:
        shape = parse_input(spec.input)
    except SpecError:
        return None
    if len(shape) == 3 and shape[0] == 3:
        return None
    return f"not an ImageNet classifier: its spec's input is {'x'.join(map(str, shape))}"


def _code_key(sources: tuple[Source, ...]) -> str:
    files = []
    if Source.ZOO in sources:
        from archviz.spec.zoo import zoo_dir

        files = list(zoo_dir().glob("*.yaml"))
    return content_key(files, with_code=True)


def _versions(sources: tuple[Source, ...]) -> dict[str, str]:
    """The installed versions a traced model's figures depend on (read from the packages' metadata, not imported)."""
    from importlib import metadata

    wanted = {Source.TORCHVISION: ("torch", "torchvision"), Source.TIMM: ("torch", "timm")}
    versions = {}
    for source in sources:
        for package in wanted.get(source, ()):
            try:
                versions[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                versions[package] = ""
    return versions


def _options_key(options: PickOptions) -> dict:
    """The options as the cache sees them; a device by its figures (the local CPU's are measured, and may change)."""
    key = {"input": list(options.input), "batch": options.batch, "memory": options.memory,
           "optimizer": options.optimizer if options.memory else None, "device": None}
    if options.device is not None:
        from archviz.analysis.devices import device_named

        key["device"] = repr(device_named(options.device))
    return key
