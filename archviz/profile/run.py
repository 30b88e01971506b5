"""Run a real module and measure it: peak memory, seconds per iteration, images/s, and per-layer forward and backward
time (issue 18, part 2: the measured side that predictions are checked against).

Each figure comes from its own iterations, after `warmup` untimed ones, because instruments change what they measure:
  * memory: one iteration, on CUDA between reset_peak_memory_stats and max_memory_allocated, elsewhere under
    LiveMemoryTracker (tracker.py), with no hooks;
  * whole-model time: `iterations` iterations with no tracker and no hooks, the median, synchronised on CUDA;
  * per-layer forward, then backward, time: `iterations` iterations each, with hooks (layers.py).
"""

from __future__ import annotations

import contextlib
import enum
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from torch.utils._pytree import tree_flatten

from archviz.errors import ArchvizError
from archviz.profile.choices import Amp, MemoryMethod, Optimizer
from archviz.profile.layers import LayerTiming, layer_times
from archviz.profile.tracker import LiveMemoryTracker, PeakPlace, storage_bytes

if TYPE_CHECKING:
    from archviz.graph.ir import Graph


_AMP_DTYPES = {Amp.BF16: torch.bfloat16, Amp.FP16: torch.float16}
_LR = 0.01  # any rate: the step's cost does not depend on it


@dataclass(frozen=True)
class Measurement:
    device: str  # "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)"
    input_shape: tuple[int, ...]  # one sample's, without the batch
    batch: int
    train: bool
    optimizer: Optimizer | None  # None when not training
    amp: Amp | None
    peak_bytes: int  # tensors alive at once during a steady-state iteration, baseline and input batch included
    baseline_bytes: int  # alive before the iteration: parameters, buffers, optimizer state
    method: MemoryMethod
    peak_place: PeakPlace | None  # the op and module at the peak (tracker only)
    seconds: float  # median per iteration, without tracker or hooks
    iterations: int
    layers: tuple[LayerTiming, ...]
    checkpoint_starts: tuple[str, ...] = ()  # with activation checkpointing: the layers starting segments 2, 3, ...

    @property
    def images_per_s(self) -> float:
        return self.batch / self.seconds


def measure(module: torch.nn.Module, input_shape: Sequence[int], *, batch: int = 1, train: bool = False,
            optimizer: str = "sgd", amp: str | None = None, device: str = "cpu", warmup: int = 1,
            iterations: int = 3, per_layer: bool = True, foreach: bool | None = None) -> Measurement:
    """Run `module` (moved to `device`, put in train or eval mode) on a random batch of `input_shape` samples.

    train=False: forward under torch.no_grad. train=True: forward, loss (cross-entropy against class 0 for an (N,
    classes) output, else the output's mean), backward, optimizer.step(), zero_grad(set_to_none=True).
    Layers are the calls of the module's leaf modules, by path; a module's second call is "path_1" (as archviz's
    trace names it).

    >>> m = measure(torch.nn.Linear(8, 2), (8,), batch=4, iterations=1)
    >>> m.peak_bytes  # weights (2*8 + 2) + input 4*8 + output 4*2, 4 bytes each
    232
    """
    options = _checked(input_shape, batch=batch, optimizer=optimizer if train else None, amp=amp, device=device,
                       warmup=warmup, iterations=iterations)
    target, shape, optimizer_choice, amp_choice = options
    if train and not any(parameter.requires_grad for parameter in module.parameters()):
        raise ArchvizError(f"{type(module).__name__} has no trainable parameter: measure it without train")
    module = module.to(target).train(train)
    inputs = torch.randn(batch, *shape, device=target)
    run = _Step(module, inputs, train=train, optimizer=optimizer_choice, amp=amp_choice, foreach=foreach)
    with _model_errors(shape, batch=batch, train=train):
        for _ in range(warmup):
            run()
        peak, baseline, method, place = _peak_memory(run)
    seconds = statistics.median(_timed(run, iterations))
    layers = layer_times(run, iterations) if per_layer else ()
    return Measurement(_device_text(target), shape, batch, train, optimizer_choice, amp_choice, peak, baseline,
                       method, place, seconds, iterations, layers)


@contextlib.contextmanager
def _model_errors(shape, *, batch: int, train: bool):
    """The model's own refusal of this input (batch norm training on one value per channel, a size too small, out of
    memory) as one line: the first iterations run here, so the timed ones run what already ran once."""
    try:
        yield
    except (RuntimeError, ValueError) as error:
        step = "a training step" if train else "a forward pass"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ArchvizError(f"{step} at batch {batch}, input {'x'.join(map(str, shape))} failed: "
                           f"{type(error).__name__}: {first_line}") from None


def measure_graph(graph: Graph, *, checkpointing: int | None = None, **options) -> Measurement:
    """measure() of the graph built by archviz's own to_torch, at its input shape, with layers named by Graph nodes;
    with checkpointing=N, activation checkpointing in N segments (analysis/checkpointing.py), and no per-layer times
    (a checkpointed layer runs twice a step).

    to_torch places node "layer1.0.conv1" at that module path, so a leaf module's path is its node's name, or (an op
    built as several modules) starts with it: their times add up under the node. A node that shares another's module
    (`shares:` with the same arguments) is that module's second call. `options` are measure()'s.

    >>> import archviz
    >>> m = measure_graph(archviz.load("lenet"), iterations=1)
    >>> m.layers[0].path
    'conv1'
    """
    from archviz.torch_build import to_torch

    from archviz.analysis.checkpointing import segments

    device = options.get("device", "cpu")
    _checked_device(device)
    module = to_torch(graph, device=device)
    starts: tuple[str, ...] = ()
    if checkpointing is not None:
        cut = segments(graph, checkpointing)
        module.checkpoint(cut)
        options["per_layer"] = False
        starts = tuple(graph.nodes[step].name for step in cut.starts)
    measured = replace(measure(module, graph.input_shape, **options), checkpoint_starts=starts)
    calls = _shared_calls(graph)
    layers = [replace(layer, path=_caller(layer.path, calls)) for layer in measured.layers]
    return replace(measured, layers=by_node(layers, [node.name for node in graph.nodes]))


def _shared_calls(graph: Graph) -> dict[str, list[str]]:
    """owner node -> the nodes that call its very module again, in graph order (to_torch places that one module at
    each of their paths, and torch lists it once, at the owner's)."""
    calls: dict[str, list[str]] = defaultdict(list)
    for node in graph.nodes:
        if node.shares is not None and dict(node.attrs) == dict(graph.node(node.shares).attrs):
            calls[node.shares].append(node.name)
    return calls


def _caller(name: str, calls: dict[str, list[str]]) -> str:
    """"fc_1" (the second call of fc's module) -> the node that made that call; any other name as it is."""
    base, _, count = name.rpartition("_")
    if not count.isdigit():
        return name
    for owner, sharers in calls.items():
        if (base == owner or base.startswith(owner + ".")) and int(count) <= len(sharers):
            return sharers[int(count) - 1] + base[len(owner):]
    return name


def by_node(layers: Sequence[LayerTiming], names: Sequence[str]) -> tuple[LayerTiming, ...]:
    """Layer timings summed per node: a path that is a node's name, or lies under one, counts for that node (the
    deepest such); others keep their path. In `names`' order, then the rest."""
    known = set(names)
    forward: dict[str, float] = defaultdict(float)
    backward: dict[str, float | None] = {}
    for layer in layers:
        node = _node_of(layer.path, known)
        forward[node] += layer.forward_s
        if layer.backward_s is None:
            backward.setdefault(node, None)
        else:
            backward[node] = (backward.get(node) or 0.0) + layer.backward_s
    order = [name for name in names if name in forward] + [path for path in forward if path not in known]
    return tuple(LayerTiming(path, forward[path], backward[path]) for path in order)


def _node_of(path: str, names: set[str]) -> str:
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in names:
            return candidate
    return path


def _checked(input_shape, *, batch, optimizer, amp, device, warmup, iterations):
    """Every option checked up front: (device, shape, optimizer, amp), or an ArchvizError naming the bad one."""
    target = _checked_device(device)
    shape = tuple(input_shape)
    if not shape or not all(isinstance(n, int) and n > 0 for n in shape):
        raise ArchvizError(f"input shape {shape!r}: expected positive integers, e.g. (3, 224, 224)")
    for name, value, least in (("batch", batch, 1), ("iterations", iterations, 1), ("warmup", warmup, 0)):
        if not isinstance(value, int) or value < least:
            raise ArchvizError(f"{name} {value!r}: expected an integer >= {least}")
    return target, shape, _choice(Optimizer, "optimizer", optimizer), _choice(Amp, "amp", amp)


def _choice(kind: type[enum.StrEnum], name: str, value):
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        raise ArchvizError(f"{name} {value!r}: expected one of {', '.join(kind)}") from None


def _checked_device(device: str) -> torch.device:
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError):
        raise ArchvizError(f"device {device!r}: expected cpu or cuda") from None
    if target.type not in ("cpu", "cuda"):
        raise ArchvizError(f"device {device!r}: expected cpu or cuda")
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise ArchvizError(f"device {device!r}: this machine has no CUDA GPU that torch can use")
        if target.index is not None and target.index >= torch.cuda.device_count():
            raise ArchvizError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
        if target.index is None:
            target = torch.device("cuda", torch.cuda.current_device())
    return target


def _device_text(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


class _Step:
    """One iteration: forward under no_grad, or a whole training step; `inputs` made once and reused."""

    def __init__(self, module, inputs, *, train: bool, optimizer: Optimizer | None, amp: Amp | None,
                 foreach: bool | None = None):
        self.module, self.inputs, self.train = module, inputs, train
        self.device = inputs.device
        self.amp = amp
        self.optimizer = _optimizer(optimizer, module.parameters(), foreach) if train else None
        use_scaler = train and amp == Amp.FP16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.after_backward: Callable[[], None] = lambda: None

    def __call__(self) -> None:
        if not self.train:
            with torch.no_grad(), self._autocast():
                self.module(self.inputs)
            return
        with self._autocast():
            loss = _loss(self.module(self.inputs))
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.after_backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.after_backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AMP_DTYPES[self.amp])

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def alive_before(self) -> list[torch.Tensor]:
        """Parameters, buffers, optimizer state (and any gradient left over): the baseline."""
        tensors = [*self.module.parameters(), *self.module.buffers()]
        tensors += [p.grad for p in self.module.parameters() if p.grad is not None]
        if self.optimizer is not None:
            for state in self.optimizer.state.values():
                tensors += [value for value in state.values() if isinstance(value, torch.Tensor)]
        return tensors


def _optimizer(choice: Optimizer, parameters, foreach: bool | None = None):
    if choice == Optimizer.SGD:
        return torch.optim.SGD(parameters, lr=_LR, foreach=foreach)
    if choice == Optimizer.MOMENTUM:
        return torch.optim.SGD(parameters, lr=_LR, momentum=0.9, foreach=foreach)
    if choice == Optimizer.ADAM:
        return torch.optim.Adam(parameters, lr=_LR, foreach=foreach)
    return torch.optim.AdamW(parameters, lr=_LR, foreach=foreach)


def _loss(output) -> torch.Tensor:
    """Cross-entropy against class 0 for each (N, classes) output, the mean of any other; summed (aux heads)."""
    outputs = [t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not outputs:
        raise ArchvizError(f"the model returned {type(output).__name__}, with no floating-point tensor to train on")
    losses = []
    for tensor in outputs:
        if tensor.dim() == 2:
            labels = torch.zeros(tensor.shape[0], dtype=torch.long, device=tensor.device)
            losses.append(torch.nn.functional.cross_entropy(tensor.float(), labels))
        else:
            losses.append(tensor.float().mean())
    return sum(losses[1:], losses[0])


def _peak_memory(run: _Step) -> tuple[int, int, MemoryMethod, PeakPlace | None]:
    baseline = storage_bytes(run.alive_before())
    if run.device.type == "cuda":
        run.sync()
        torch.cuda.reset_peak_memory_stats(run.device)
        run()
        run.sync()
        return torch.cuda.max_memory_allocated(run.device), baseline, MemoryMethod.CUDA, None
    # module hooks would hold the tensors a checkpointed segment makes again in backward (ModuleTracker's)
    checkpointed = bool(getattr(run.module, "checkpoint_starts", ()))
    with LiveMemoryTracker(baseline=run.alive_before(), modules=not checkpointed) as tracker:
        tracker.track(run.inputs)
        run()
    result = tracker.result()
    return result.peak_bytes, result.baseline_bytes, MemoryMethod.TRACKER, result.peak_place


def _timed(run: _Step, iterations: int) -> list[float]:
    seconds = []
    for _ in range(iterations):
        run.sync()
        start = time.perf_counter()
        run()
        run.sync()
        seconds.append(time.perf_counter() - start)
    return seconds


def measure_model(source: str, *, input_shape: Sequence[int] | None = None, overrides=None, kwargs=None,
                  checkpointing: int | None = None, **options) -> Measurement:
    """measure() of a model named as `archviz inspect` names it: a zoo name, spec or ONNX file (built by to_torch,
    layers named by Graph node), or torchvision:NAME / timm:NAME (built with random weights, never downloaded) or
    FILE.py:Name / module:name (IMPORTS AND RUNS that code), timed by leaf module call: for these, a leaf module's
    path is the traced Graph's node name, and a second call is named as the trace names it (torchvision BasicBlock's
    relu, then relu_1). `options` are measure()'s. With checkpointing=N every source is measured as archviz builds
    its graph (measure_graph), which is what cuts it into segments.
    """
    import archviz
    from archviz.graph.build import parse_input
    from archviz.trace.load import SourceKind, default_input, is_model_source, parse_source

    input_shape = None if input_shape is None else parse_input(input_shape)
    if not is_model_source(source) or checkpointing is not None:
        graph = archviz.load(source, input=input_shape, overrides=overrides, kwargs=kwargs)
        return measure_graph(graph, checkpointing=checkpointing, **options)
    parsed = parse_source(source, kwargs=kwargs)
    if overrides:
        raise ArchvizError(f"{source}: --set changes a spec's params; a PyTorch model takes --kwargs")
    shape = input_shape or default_input(parsed)
    if shape is None:
        raise ArchvizError(f"{source}: archviz does not know this model's input; give it with --input CxHxW")
    if parsed.kind in (SourceKind.TORCHVISION, SourceKind.TIMM):
        return measure(library_module(parsed), shape, **options)
    return measure(_users_module(parsed), shape, **options)


def _users_module(parsed) -> torch.nn.Module:
    """FILE.py:Name or package.module:name, called with its kwargs on the CPU: IMPORTS AND RUNS that code, as
    `archviz inspect` does (archviz.trace.load), with the weights it initialises itself."""
    from archviz.trace.load import model_factory  # the one place that imports a user's code and finds the name in it

    factory, label = model_factory(parsed)
    if isinstance(factory, torch.nn.Module):  # `module:model`, an instance made on import
        return factory
    try:
        model = factory(**dict(parsed.kwargs))
    except Exception as error:  # the user's code: any failure is theirs to fix, said in one line
        shown = ", ".join(f"{key}={value!r}" for key, value in parsed.kwargs.items())
        raise ArchvizError(f"{label}({shown}) raised {type(error).__name__}: {error}") from None
    if not isinstance(model, torch.nn.Module):
        raise ArchvizError(f"{label}(...) returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def library_module(parsed) -> torch.nn.Module:
    """A torchvision or timm model with its own random initialisation (no weights are loaded or downloaded)."""
    import warnings

    from archviz.trace.load import SourceKind, TIMM_WEIGHT_ARGUMENTS, timm_pretrained_cfg, torchvision_names

    kwargs = dict(parsed.kwargs)
    if parsed.kind == SourceKind.TIMM:
        given = [key for key in TIMM_WEIGHT_ARGUMENTS if key in kwargs]
        if given:
            raise ArchvizError(f"{parsed.text}: --kwargs {', '.join(given)}: profile builds timm models with random "
                               "weights and never loads or downloads any")
        timm_pretrained_cfg(parsed)  # an unknown name or tag: an error with the closest names
        import timm

        return _constructed(lambda: timm.create_model(parsed.location, pretrained=False, **kwargs), parsed.text)
    import torchvision

    if parsed.location not in torchvision_names():
        from archviz.errors import UnknownNameError, closest

        raise UnknownNameError(f"{parsed.text}: torchvision has no classification model {parsed.location!r}"
                               f"{closest(parsed.location, torchvision_names())}")
    if "weights" in kwargs:
        raise ArchvizError(f"{parsed.text}: --kwargs weights: profile builds models with random weights")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # GoogLeNet's and Inception v3's note on their default init
        return _constructed(lambda: torchvision.models.get_model(parsed.location, weights=None, **kwargs), parsed.text)


def _constructed(make: Callable[[], torch.nn.Module], label: str) -> torch.nn.Module:
    try:
        return make()
    except TypeError as error:  # an unknown keyword argument
        raise ArchvizError(f"{label}: {error}") from None
