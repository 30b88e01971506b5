"""Training memory, predicted: the most bytes of tensors alive at once in one steady-state training step (forward,
loss, backward, optimizer step, gradients set to None after it), and where that peak falls. Pure Python, no torch.

What is alive, step by step (the timeline torch's autograd follows; each op's facts from its registry entry):
  * always: parameters, buffers and the optimizer's state (SGD none; momentum one buffer per parameter; Adam and
    AdamW two, and a one-element float32 step count per parameter tensor), and the input batch;
  * forward: each layer's output from the layer that makes it (a view or an in-place op makes no new bytes) until
    the last layer reading it has run, or, where a layer keeps it for its backward pass (Op.saved), until that
    layer's backward has run; the tensors a layer makes for backward alone (batch norm's statistics, max pool's
    indices, dropout's mask) from its forward to its backward;
  * loss: cross-entropy over a classifier's (N, classes) output keeps its log-softmax and the int64 labels; the
    mean of any other output keeps nothing (under autocast its float32 copy is alive while it runs);
  * backward, last layer first: the gradient of a layer's output until the layer's backward has run; the gradient
    of each input that needs one (an input computed from trained weights: the image needs none), added to one
    already there by a new tensor; each parameter's gradient, kept to the optimizer step;
  * autocast (amp, bf16 or fp16, as torch runs it on the CPU): the ops that autocast (Op.autocasts: conv, linear,
    matmul, attention) compute in 2-byte floats from 2-byte copies of their weights (kept for backward) and of any
    float32 input (the image: kept instead of it); every other op keeps its inputs' precision, so the activations
    and their gradients are 2 bytes from the first convolution on, while the parameters, their gradients and the
    optimizer's state stay float32; an op that widens (Op.widens_under_autocast: on the CPU local response norm,
    3-d pools, reflection padding; anywhere float32 weights promoting its input) makes float32 again, up to the
    next that autocasts; the loss runs on a float32 copy of the output;
  * optimizer step: Adam and AdamW update one parameter tensor at a time on the CPU (torch's default there), whose
    denominator sqrt(v) / c + eps is two temporaries of that tensor's size at once: twice the largest parameter
    tensor; SGD with or without momentum updates in place.
On a GPU, CUDA's defaults apply instead (analyze(on_gpu=True) sets all three), each checked where the CPU can run it:
  * `foreach`: torch's for-each optimizer kernels (its default when every parameter is on CUDA): Adam's and AdamW's step
    makes one temporary of every parameter's size at once (torch._foreach_sqrt of all second moments), and their
    step counts stay on the CPU (a CPU tensor unless capturable or fused); measured on the CPU with foreach=True by
    tests/test_training_memory.py;
  * `block_bytes`=512, the caching allocator's blocks: every tensor takes a whole number of 512-byte blocks
    (kMinBlockSize, c10/cuda/CUDACachingAllocator.cpp, round_size), which is what torch.cuda.max_memory_allocated
    counts. Not checked on a GPU yet;
  * `autocast_device`="cuda": CUDA's autocast lists, in which layer and group norm, softmax, exp, pow, sum and
    interpolation widen to float32 and 3-d pools and reflection padding do not (Op.widens_under_autocast(attrs,
    "cuda")), checked for every op on fake CUDA tensors, whose autocast takes CUDA's lists without a GPU.
Not counted (so the prediction is a lower bound there, and says so): tensors a layer without a formula keeps
(opaque layers), temporaries inside one op's backward formula where its registry entry does not state them
(Op.backward_scratch: local response norm and the connection table do, as measured on the CPU, where the ops their
backward runs may differ from CUDA's), and on a GPU batch norm's int64 step counters (a block each).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from archviz.analysis.checkpointing import Segments
from archviz.analysis.memory import held_by_callers
from archviz.graph.ir import INPUT, Graph
from archviz.ops import get_op
from archviz.ops.base import LOWER_PRECISION_BYTES, Precision, numel
from archviz.profile.choices import Amp, Optimizer

STEP_COUNT_BYTES = 4  # Adam's step count: a one-element float32 tensor per parameter tensor
CUDA_BLOCK_BYTES = 512  # the CUDA caching allocator rounds every tensor up to whole 512-byte blocks
LABEL_BYTES = 8  # cross-entropy's int64 class labels


class Phase(enum.StrEnum):
    """When in a training step the peak comes."""

    FORWARD = "forward"
    BACKWARD = "backward"
    STEP = "optimizer step"


@dataclass(frozen=True)
class TrainingMemory:
    """The predicted training step of one batch: the peak and what it is made of, in bytes."""

    batch: int
    optimizer: str
    params_bytes: int
    buffers_bytes: int
    optimizer_bytes: int  # the optimizer's state, alive between steps
    input_bytes: int  # the batch of inputs
    grads_bytes: int  # every parameter's gradient, alive from its layer's backward to the optimizer step
    saved_bytes: int  # what autograd keeps for the backward pass, at the end of the forward pass
    peak_bytes: int
    peak_phase: str  # forward, backward or optimizer step
    peak_at: str  # the layer running at the peak ("" in the optimizer step)
    peak_activations_bytes: int  # at the peak: activations, their gradients and the loss's tensors
    peak_grads_bytes: int  # at the peak: the parameters' gradients made so far
    step_temporary_bytes: int  # the optimizer step's temporaries (Adam's denominator)
    uncounted: tuple[str, ...] = ()  # layers without a formula: what they keep is not known, so not counted
    amp: str | None = None  # autocast's lower precision (bf16, fp16), or None: every tensor at the report's dtype
    fits_batch: int | None = None  # with a memory budget (`fit_bytes`): the largest batch whose peak fits; 0: none
    fit_bytes: int | None = None
    foreach: bool = False  # the optimizer's for-each kernels (CUDA's default): one temporary of all the parameters
    block_bytes: int = 1  # every tensor rounded up to whole blocks of this many bytes (CUDA's allocator: 512)
    autocast_device: str = "cpu"  # whose autocast lists say which ops widen to float32 ("cpu" or "cuda")
    checkpoint_starts: tuple[str, ...] = ()  # with activation checkpointing: the layers starting segments 2, 3, ...

    @property
    def baseline_bytes(self) -> int:
        """Alive before a step starts: parameters, buffers and the optimizer's state."""
        return self.params_bytes + self.buffers_bytes + self.optimizer_bytes


def training_memory(graph: Graph, *, batch: int, dtype_bytes: int, optimizer: Optimizer | str = Optimizer.SGD,
                    params: int, buffers: int, fit_bytes: int | None = None, amp: str | None = None,
                    foreach: bool = False, block_bytes: int = 1, autocast_device: str = "cpu",
                    segments: Segments | None = None) -> TrainingMemory:
    """The predicted training step of `graph` at `batch`, tensors and weights at `dtype_bytes` an element; foreach,
    block_bytes and autocast_device: CUDA's defaults are True, 512 and "cuda" (see the module docstring); segments:
    activation checkpointing's (analysis/checkpointing.py), every segment but the last run again in backward.

    >>> from archviz import load
    >>> from archviz.analysis.report import analyze
    >>> totals = analyze(load("lenet")).totals
    >>> memory = training_memory(load("lenet"), batch=8, dtype_bytes=4, params=totals.params, buffers=totals.buffers)
    >>> memory.peak_phase.value, memory.peak_at, memory.params_bytes
    ('backward', 'tanh1', 246824)
    """
    amp = None if amp is None else Amp(amp)

    def step_at(size: int) -> TrainingMemory:
        return _step(graph, size, dtype_bytes, Optimizer(optimizer), params, buffers, amp, foreach, block_bytes,
                     autocast_device, segments)[0]

    memory = step_at(batch)
    if fit_bytes is None:
        return memory
    fits = largest_batch(lambda b: step_at(b).peak_bytes, fit_bytes)
    return dataclasses.replace(memory, fits_batch=fits, fit_bytes=fit_bytes)


def saved_bytes_per_layer(graph: Graph, *, batch: int, dtype_bytes: int, amp: str | None = None,
                          block_bytes: int = 1, autocast_device: str = "cpu",
                          segments: Segments | None = None) -> dict[str, int]:
    """Bytes each layer has autograd keep for its backward pass (tensors shared with other layers counted at each);
    layers without a formula and layers autograd records nothing of are left out; in a checkpointed segment a layer
    keeps nothing through the forward pass (its figure is what it keeps once run again)."""
    return _Timeline(graph, batch, dtype_bytes, None if amp is None else Amp(amp), block_bytes,
                     autocast_device, segments).saved_per_layer


def _blocks(size: int, granule: int) -> int:
    """`size` bytes rounded up to whole allocator blocks (a granule of 1: as they are)."""
    return -(-size // granule) * granule


def largest_batch(peak_at_batch, budget: int, *, most: int = 1 << 24) -> int:
    """The largest batch whose peak (a function growing with the batch) is at most `budget`; 0 if not even 1."""
    if peak_at_batch(1) > budget:
        return 0
    low, high = 1, 2
    while high <= most and peak_at_batch(high) <= budget:
        low, high = high, high * 2
    high = min(high, most + 1)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if peak_at_batch(middle) <= budget else (low, middle)
    return low


def _step(graph: Graph, batch: int, dtype_bytes: int, optimizer: Optimizer, params: int, buffers: int,
          amp: Amp | None, foreach: bool = False, granule: int = 1, autocast_device: str = "cpu",
          segments: Segments | None = None):
    timeline = _Timeline(graph, batch, dtype_bytes, amp, granule, autocast_device, segments)
    tensors = _parameter_tensors(graph)
    params_bytes, buffers_bytes = params * dtype_bytes, buffers * dtype_bytes
    if granule > 1:
        params_bytes = sum(_blocks(numel(w.shape) * dtype_bytes, granule) for w in tensors)
        buffers_bytes = sum(_blocks(numel(w.shape) * dtype_bytes, granule) for w in _buffer_tensors(graph))
    adam = optimizer in (Optimizer.ADAM, Optimizer.ADAMW)
    state = _optimizer_state_bytes(optimizer, params_bytes, 0 if foreach else len(tensors))
    base = params_bytes + buffers_bytes + state
    forward_peak, forward_at, saved = timeline.forward()
    backward_peak, backward_at, grads_at_peak, activations_at_peak = timeline.backward(dtype_bytes)
    largest = max((_blocks(numel(w.shape) * dtype_bytes, granule) for w in tensors), default=0)
    temporary = (params_bytes if foreach else 2 * largest) if adam else 0
    step_bytes = params_bytes + temporary + timeline.input_bytes
    candidates = [
        (forward_peak, Phase.FORWARD, forward_at, forward_peak - timeline.input_bytes, 0),
        (backward_peak, Phase.BACKWARD, backward_at, activations_at_peak, grads_at_peak),
        (step_bytes, Phase.STEP, "", 0, params_bytes),
    ]
    peak, phase, at, activations, grads = max(candidates, key=lambda c: c[0])
    return TrainingMemory(
        batch=batch, optimizer=optimizer.value, params_bytes=params_bytes, buffers_bytes=buffers_bytes,
        optimizer_bytes=state, input_bytes=timeline.input_bytes, grads_bytes=params_bytes, saved_bytes=saved,
        peak_bytes=base + peak, peak_phase=phase, peak_at=at, peak_activations_bytes=activations,
        peak_grads_bytes=grads, step_temporary_bytes=temporary, uncounted=timeline.uncounted,
        amp=None if amp is None else amp.value, foreach=foreach, block_bytes=granule, autocast_device=autocast_device,
        checkpoint_starts=() if segments is None else tuple(graph.nodes[step].name for step in segments.starts),
    ), timeline


def _checkpoint(segment: int) -> str:
    """The name standing for a checkpoint, which keeps its segment's input as a layer keeps what it saves."""
    return f"(checkpoint {segment})"


def _optimizer_state_bytes(optimizer: Optimizer, params_bytes: int, tensors: int) -> int:
    if optimizer == Optimizer.MOMENTUM:
        return params_bytes
    if optimizer in (Optimizer.ADAM, Optimizer.ADAMW):
        return 2 * params_bytes + tensors * STEP_COUNT_BYTES
    return 0


def _parameter_tensors(graph: Graph) -> list:
    """The model's parameter tensors (a weight and a bias are two), each once where shared."""
    return [w for w in _weight_tensors(graph) if w.trainable]


def _buffer_tensors(graph: Graph) -> list:
    """The model's floating-point buffers (batch norm's running mean and variance), each once where shared."""
    return [w for w in _weight_tensors(graph) if not w.trainable]


def _weight_tensors(graph: Graph) -> list:
    tensors = []
    for node in graph.nodes:
        if node.shares is None:
            tensors += get_op(node.op).weights(node.attrs, list(node.in_shapes))
    return tensors


@dataclass
class _Backward:
    """The backward pass so far: bytes alive besides the weights (activations, their gradients, what layers keep),
    parameter gradients made, and the peak."""

    live: set[str]
    keepers: dict[str, set[str]]
    grads: dict[str, int]  # a storage -> bytes of its gradient, made and not yet consumed
    activations: int
    grads_made: int = 0
    peak: int = 0
    peak_at: str = ""
    peak_grads: int = 0
    peak_activations: int = 0

    def note(self, transient: int, at: str) -> None:
        """A moment with `transient` bytes held besides: the peak if it is the most yet."""
        if self.activations + transient + self.grads_made > self.peak:
            self.peak, self.peak_at = self.activations + transient + self.grads_made, at
            self.peak_grads, self.peak_activations = self.grads_made, self.activations + transient


class _Timeline:
    """Bytes alive at each moment of one step, beyond the weights and the optimizer's state."""

    def __init__(self, graph: Graph, batch: int, dtype_bytes: int, amp: Amp | None = None, granule: int = 1,
                 autocast_device: str = "cpu", segments: Segments | None = None):
        self.graph, self.batch, self.dtype_bytes, self.amp = graph, batch, dtype_bytes, amp
        self.autocast_device = autocast_device
        self.checkpointed = () if segments is None else segments.checkpointed
        self.segment_of = {graph.nodes[step].name: k for k, steps in enumerate(self.checkpointed) for step in steps}
        self.granule = granule  # every tensor's bytes rounded up to it (CUDA's allocator blocks)
        self.nodes = graph.nodes
        self.input_bytes = _blocks(numel(graph.input_shape) * batch * dtype_bytes, granule)
        self.buffer_of: dict[str, str] = {INPUT: INPUT}  # a tensor -> the storage it lives in
        self.size: dict[str, int] = {INPUT: self.input_bytes}
        self.itemsize: dict[str, int] = {INPUT: dtype_bytes}  # bytes an element of each tensor
        self.needs_grad: dict[str, bool] = {INPUT: False}
        self.saved: dict[str, object] = {}
        self.keepers: dict[str, set[str]] = {}  # a storage -> the layers keeping it for backward
        self.kept_by: dict[str, set[str]] = {}  # a layer -> the storages it keeps
        self.made: dict[str, int] = {}  # a layer -> bytes of the tensors it makes for backward alone
        self.cached_casts: dict[str, int] = {}  # a layer -> bytes of its weights' 2-byte copies (autocast caches them)
        self.in_place: set[str] = set()  # layers writing their output over their input (relu with inplace)
        self.backward_scratch: dict[str, int] = {}  # a layer -> bytes its backward formula holds for a moment
        self.saved_per_layer: dict[str, int] = {}
        self.uncounted: tuple[str, ...] = ()
        self._prepare()
        self.segment_inputs = self._segment_inputs()

    def _bytes(self, shape, itemsize: int | None = None) -> int:
        return _blocks(numel(shape) * self.batch * (itemsize or self.dtype_bytes), self.granule)

    def _output_itemsize(self, op, node) -> int:
        """Under autocast an op that autocasts makes 2-byte floats, one that widens float32, and any other its inputs'
        widest."""
        if self.amp is None:
            return self.dtype_bytes
        if op.autocasts:
            return LOWER_PRECISION_BYTES
        if op.widens_under_autocast(node.attrs, self.autocast_device):
            return self.dtype_bytes
        return max(self.itemsize[i] for i in node.inputs)

    def _prepare(self) -> None:
        uncounted = []
        for node in self.nodes:
            op = get_op(node.op)
            in_shapes = list(node.in_shapes)
            in_place = op.inplace_capable and bool(node.attrs.get("inplace"))
            if in_place:
                self.in_place.add(node.name)
            aliases = op.output_is_input(node.attrs) or in_place
            self.buffer_of[node.name] = self.buffer_of[node.inputs[0]] if aliases else node.name
            itemsize = self.itemsize[node.inputs[0]] if aliases else self._output_itemsize(op, node)
            self.itemsize[node.name] = itemsize
            if not aliases:
                self.size[node.name] = self._bytes(node.out_shape, itemsize)
            trained = op.params(node.attrs, in_shapes) > 0
            self.needs_grad[node.name] = trained or any(self.needs_grad[i] for i in node.inputs)
            saved = op.saved(node.attrs, in_shapes, node.out_shape)
            if saved is None:
                uncounted.append(node.name)
                continue
            if not self.needs_grad[node.name]:
                continue  # autograd records nothing of it
            self.saved[node.name] = saved
            kept = {self.buffer_of[node.inputs[i]] for i in saved.inputs}
            casts = 0
            if self.amp is not None and op.autocasts:  # 2-byte copies of its wider inputs and of its weights
                wider = {s for s in kept if self.itemsize[s] > LOWER_PRECISION_BYTES}
                kept -= wider
                casts = sum(self._cast_bytes(s) for s in wider)
                self.cached_casts[node.name] = sum(_blocks(numel(w.shape) * LOWER_PRECISION_BYTES, self.granule)
                                                   for w in op.weights(node.attrs, in_shapes) if w.trainable)
                casts += self.cached_casts[node.name]
            if saved.output:
                kept.add(self.buffer_of[node.name])
            self.kept_by[node.name] = kept
            for storage in kept:
                self.keepers.setdefault(storage, set()).add(node.name)
            self.made[node.name] = casts + sum(_blocks(k.bytes(batch=self.batch, activation_itemsize=itemsize),
                                                       self.granule) for k in saved.made)
            self.backward_scratch[node.name] = sum(
                _blocks(k.bytes(batch=self.batch, activation_itemsize=itemsize), self.granule)
                for k in op.backward_scratch(node.attrs, in_shapes, node.out_shape, self._precision(node)))
            self.saved_per_layer[node.name] = self.made[node.name] + sum(self.size[s] for s in kept)
        self.uncounted = tuple(uncounted)
        self.loss_bytes = self._loss_bytes()

    def _precision(self, node) -> Precision:
        """Where the layer's backward runs: its input's bytes per element, its weights' (float32 under autocast)."""
        return Precision(self.itemsize[node.inputs[0]], self.dtype_bytes, self.amp is not None)

    def _cast_bytes(self, storage: str) -> int:
        """A 2-byte copy of a wider tensor."""
        if storage == INPUT:
            return self._bytes(self.graph.input_shape, LOWER_PRECISION_BYTES)
        return self._bytes(self.graph.node(storage).out_shape, LOWER_PRECISION_BYTES)

    def _loss_bytes(self) -> int:
        """Cross-entropy over an (N, classes) output keeps its log-softmax and the labels; else a mean keeps
        nothing. Under autocast either runs on a float32 copy of the 2-byte output (the mean's only while it runs)."""
        out_shape = self.graph.node(self.graph.output).out_shape
        narrow = self.itemsize[self.graph.output] < self.dtype_bytes  # autocast's output, copied to float32 first
        copy = self._bytes(out_shape) if narrow else 0
        if len(out_shape) != 1:
            return copy
        return self._bytes(out_shape) + copy + _blocks(self.batch * LABEL_BYTES, self.granule)

    def forward(self) -> tuple[int, str, int]:
        """(the most bytes alive in the forward pass, the layer then, bytes kept for backward at its end)."""
        last_read = {INPUT: len(self.nodes)}  # the input batch stays, held by the loop
        for step, node in enumerate(self.nodes):
            for source in node.inputs:
                last_read[self.buffer_of[source]] = max(last_read.get(self.buffer_of[source], -1), step)
            last_read.setdefault(self.buffer_of[node.name], step)
        last_read[self.buffer_of[self.graph.output]] = len(self.nodes)
        if not self.checkpointed:  # archviz's build, which checkpoints, frees every tensor at its last use
            for name, step in held_by_callers(self.graph).items():  # a module's arguments, held by its caller
                last_read[self.buffer_of[name]] = max(last_read.get(self.buffer_of[name], -1), step)
        freed_after: dict[int, list[str]] = {}  # a tensor held past its last read is freed at a step not reading it
        for storage, step in last_read.items():
            freed_after.setdefault(step, []).append(storage)
        keepers = self._forward_keepers()
        alive, peak, peak_at = self.input_bytes, self.input_bytes, INPUT
        live = {INPUT}
        for step, node in enumerate(self.nodes):
            storage = self.buffer_of[node.name]
            if storage == node.name:
                alive += self.size[storage]
                live.add(storage)
            made = self.made.get(node.name, 0)
            if alive + made > peak:
                peak, peak_at = alive + made, node.name
            # in a checkpointed segment what a layer makes for backward is dropped at once, but for the weights'
            # 2-byte copies, which autocast caches to the end of the forward pass
            alive += self.cached_casts.get(node.name, 0) if node.name in self.segment_of else made
            for source in freed_after.get(step, ()):
                if source in live and not keepers.get(source):
                    alive -= self.size[source]
                    live.discard(source)
        alive += self.loss_bytes
        if alive > peak:
            peak, peak_at = alive, self.graph.output
        output = self.buffer_of[self.graph.output]
        if not keepers.get(output):  # the loop holds the loss, not the output
            live.discard(output)
        self._live_after_forward = live
        saved = sum(self.size[s] for s in live if keepers.get(s)) + self._made_in_forward()
        return peak, peak_at, saved

    def _forward_keepers(self) -> dict[str, set[str]]:
        """The layers keeping each storage through the forward pass: none in a checkpointed segment, whose input the
        checkpoint keeps instead."""
        return self._with_checkpoints({storage: {name for name in names if name not in self.segment_of}
                                       for storage, names in self.keepers.items()})

    def _with_checkpoints(self, keepers: dict[str, set[str]]) -> dict[str, set[str]]:
        """`keepers`, each checkpoint added as a keeper of its segment's input."""
        for segment, storages in enumerate(self.segment_inputs):
            for storage in storages:
                keepers.setdefault(storage, set()).add(_checkpoint(segment))
        return keepers

    def _segment_inputs(self) -> list[set[str]]:
        """The storages each checkpointed segment reads from before it: the one tensor at its cut (the image for
        the first)."""
        inputs = []
        for steps in self.checkpointed:
            inside = {self.nodes[step].name for step in steps}
            inputs.append({self.buffer_of[source] for step in steps for source in self.nodes[step].inputs
                           if source not in inside})
        return inputs

    def _made_in_forward(self) -> int:
        return sum(made for name, made in self.made.items() if name not in self.segment_of)

    def backward(self, dtype_bytes: int) -> tuple[int, str, int, int]:
        """(the most bytes alive in the backward pass, the layer then, parameter gradients then, the rest then)."""
        live = set(self._live_after_forward)
        keepers = self._with_checkpoints({storage: set(names) for storage, names in self.keepers.items()})
        output = self.buffer_of[self.graph.output]
        state = _Backward(live, keepers, grads={output: self.size[output]},  # the loss's gradient of the output
                          activations=sum(self.size[s] for s in live) + self._made_in_forward() + self.size[output])
        state.note(0, self.graph.output)
        for index in reversed(range(len(self.nodes))):
            node = self.nodes[index]
            segment = self.segment_of.get(node.name)
            if segment is not None and index == self.checkpointed[segment][-1]:  # its forward runs again first
                kept, most, at = self._run_again(segment, live)
                state.note(most, f"{at} (run again)")
                state.activations += kept
            if self.needs_grad[node.name]:
                self._backward_layer(node, state, dtype_bytes)
            if segment is not None and index == self.checkpointed[segment][0]:  # the checkpoint lets its input go
                for storage in self.segment_inputs[segment]:
                    keepers[storage].discard(_checkpoint(segment))
                    state.activations -= self._free_if_unkept(storage, keepers, live)
        return state.peak, state.peak_at, state.peak_grads, state.peak_activations

    def _backward_layer(self, node, state: _Backward, dtype_bytes: int) -> None:
        """One layer's backward: its input gradients made (one made twice added into one), its output's gradient,
        what it made for backward and what no other layer keeps then freed; its weights' gradients kept."""
        storage = self.buffer_of[node.name]
        op = get_op(node.op)
        if node.shares is None:
            state.grads_made += sum(_blocks(numel(w.shape) * dtype_bytes, self.granule)
                                    for w in op.weights(node.attrs, list(node.in_shapes)) if w.trainable)
        passes_through = storage != node.name  # a view's or in-place op's gradient is its output's
        targets = [] if passes_through else [self.buffer_of[s] for s in node.inputs if self.needs_grad.get(s, False)]
        for target in targets:
            size = self.size.get(target, 0)
            state.activations += size
            state.grads[target] = state.grads.get(target, 0) + size
        # an in-place layer's backward makes its input's gradient anew (relu_'s threshold_backward) beside its
        # output's, which it then replaces; a view's passes its output's on
        renewed = self.size[storage] if node.name in self.in_place and any(
            self.needs_grad.get(source, False) for source in node.inputs) else 0
        state.note(self.backward_scratch.get(node.name, 0) + renewed, node.name)
        for target in targets:
            extra = state.grads.get(target, 0) - self.size.get(target, 0)
            if extra > 0:
                state.activations -= extra
                state.grads[target] -= extra
        if not passes_through and storage in state.grads:
            state.activations -= state.grads.pop(storage)
        state.activations -= self.made.get(node.name, 0)
        for kept in self.kept_by.get(node.name, ()):
            state.keepers[kept].discard(node.name)
            state.activations -= self._free_if_unkept(kept, state.keepers, state.live)

    def _free_if_unkept(self, storage: str, keepers: dict[str, set[str]], live: set[str]) -> int:
        """The bytes freed when nothing keeps `storage` any more (the input batch stays, held by the loop)."""
        if keepers.get(storage) or storage not in live or storage == INPUT:
            return 0
        live.discard(storage)
        return self.size[storage]

    def _run_again(self, segment: int, live: set[str]) -> tuple[int, int, str]:
        """A checkpointed segment's forward pass, run again at the start of its backward: (bytes it leaves alive,
        the most alive while it runs, the layer then). torch's checkpoint stops once every tensor the segment's
        layers save is made again; what they save stays, the rest is freed as it would be in a forward pass."""
        steps = self.checkpointed[segment]
        saving = [step for step in steps if self.kept_by.get(self.nodes[step].name)
                  or self.made.get(self.nodes[step].name)]
        if not saving:
            return 0, 0, ""
        stop = saving[-1] + 1
        kept = set().union(*(self.kept_by.get(self.nodes[step].name, ()) for step in range(steps.start, stop)))
        last_read = {}
        for step in range(steps.start, stop):
            for source in self.nodes[step].inputs:
                last_read[self.buffer_of[source]] = step
        alive, most, at = 0, 0, ""
        made: set[str] = set()
        for step in range(steps.start, stop):
            node = self.nodes[step]
            storage = self.buffer_of[node.name]
            if storage == node.name and storage not in live:
                alive += self.size[storage]
                made.add(storage)
            alive += self.made.get(node.name, 0)
            if alive > most:
                most, at = alive, node.name
            for done in [s for s in made if s not in kept and last_read.get(s, stop - 1) <= step]:
                alive -= self.size[done]
                made.discard(done)
        live.update(made)
        return alive, most, at
