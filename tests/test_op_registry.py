"""The registry-wide oracle: every registered op, at every example it declares, held against torch.

Each example is made into a node the way every source makes one (arguments normalised, resolved against the input
shapes, the output shape inferred), then built with the op's own `build_torch` and run on the CPU and on the meta
device. Checked against what torch does:
- the output shape, on the CPU and on the meta device;
- params (the module's parameters) and buffers (its floating-point buffers; batch norm's step counter is not one);
- weights(): the name, shape and kind of every tensor, in the module's order; params and buffers are their sums;
- MACs: FlopCounterMode's FLOPs / 2 per image (its convention, as the cross-check converts it);
- the window, for the receptive field: the input positions that can change one output position, found by
  perturbing each input position in turn, span exactly the declared window (extent, stride and padding);
  an op that declares no window changes its output only where its input changed;
- explain: its steps name the real output shape;
- export-spec: written as spec YAML and validated again to the same layer and arguments;
- trace: the op's own module, traced as PyTorch code is, gives back the same op and figures; so does every function
  and tensor method the op says it matches (torch_calls), called by name with the example's arguments and weights;
- ONNX: written with torch's weights, onnx.checker, onnx's reference runtime within 1e-5 of torch, read back to the
  same figures.
A registered op without examples fails by construction (test_every_op_has_examples).
"""

from __future__ import annotations

import re
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from archviz.format import shape as fmt_shape  # noqa: E402
from archviz.graph.make import made as make_layer  # noqa: E402
from archviz.ops import OpKind, all_ops  # noqa: E402
from archviz.ops.resample import pad_list  # noqa: E402
from archviz.ops.base import Op, Precision, Reduction, numel  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")

BATCH = 2
PERTURBATION = 1000.0  # far above any activation of a random input, so a max pool's output moves too

CASES = [(op, example) for op in sorted(all_ops(), key=lambda op: op.name) for example in op.examples]
IDS = [f"{op.name}-{op.examples.index(example)}" for op, example in CASES]

# Ops whose output position depends on every input position along some axis by what they compute, not through a
# window: archviz's receptive field (Araujo et al.'s sliding-window recursion) does not widen for them.
MIXES_POSITIONS = {
    "layer_norm": "normalises over its trailing dims: the statistics see every position there",
    "softmax": "a softmax over a spatial dim divides by the sum along it",
    "log_softmax": "a log-softmax over a spatial dim subtracts the log of the sum along it",
    "batchnorm2d": "without running statistics it normalises by the batch's own, which see every position",
    "group_norm": "normalises each group of channels by statistics over every position of the map",
    "instance_norm": "without running statistics it normalises each channel by statistics over every position",
    "rms_norm": "normalises over its trailing dims: the root mean square sees every position there",
    "scaled_dot_product_attention": "each query's output mixes the values at every key position (H x N x D "
                                    "tensors, not maps)",
    "concat": "a concatenation along a spatial dim places its inputs side by side: no one window describes it",
}
# Where onnx's reference runtime departs from the ONNX operator's own formula, so it cannot judge the file's numbers
# (the file is still checked by onnx.checker and read back to the same figures).
REFERENCE_RUNTIME_DEPARTS = {
    "local_response_norm": "onnx 1.23's reference LRN differs from the spec's x / (bias + alpha/size * sum x^2)^beta "
                           "by 6e-4 where torch matches it exactly",
}
# Ops whose torch module traces to an equivalent op, with the same output and totals: the tracer's stated choice.
TRACES_AS = {
    "reshape": "a reshape that merges one span of dims traces as flatten, its simpler equivalent (x.view(n, -1) "
               "reads as a flatten in every torchvision model)",
}
# Ops that ONNX has no node for of their own: they read back as their equivalent, with the same figures.
READS_BACK_AS = {
    "embedding": "padding_idx (which row gets no gradient in training) has no ONNX form: it reads back without it, "
                 "with the same figures",
    "stochastic_depth": "the identity at inference: written as ONNX Identity, read back as identity",
    "reshape": "written as ONNX Reshape; one that merges a span of dims reads back as the simpler flatten",
    "multihead_attention": "need_weights (which of torch's paths computes it: the same math) has no ONNX form: it "
                           "reads back at its default, with the same figures",
}
# Ops whose inference scratch archviz does not model yet: an inference peak through them is a lower bound.
SCRATCH_NOT_MODELLED = {
    "scaled_dot_product_attention": "torch's math attention on the CPU holds a different set of its intermediates "
                                    "(scaled query, scores, weights) at its peak depending on L, S and E",
    "multihead_attention": "torch's reference attention path holds a different set of its intermediates at its "
                           "peak depending on the sequence length, width and heads",
}
# Ops whose backward formulas hold temporaries archviz does not state yet (Op.backward_scratch): a training peak
# inside their backward is a lower bound.
BACKWARD_SCRATCH_NOT_MODELLED = {name: "its backward formula's temporaries are not stated yet" for name in (
    "absolute", "clamp", "conv1d", "conv2d", "conv3d", "div", "erf", "group_norm", "instance_norm", "matmul", "mul",
    "mul_param", "multihead_attention", "pad", "pow", "prelu", "rbf", "reduce_max", "rms_norm",
    "rsqrt", "scalar_arith", "scaled_dot_product_attention", "softmin", "sqrt")}
# Ops that rearrange a tensor's axes: the output's last two dims are no longer the input's rows and columns.
REARRANGES_AXES = {"permute": "moves the axes", "reshape": "regroups the elements"}


def made(op, example):
    """The node's attributes, input shapes and output shape, made as every source makes them (graph/make.py)."""
    layer = make_layer(op, example.args, example.inputs)
    return layer.attrs, list(layer.in_shapes), layer.out_shape


def inputs_for(in_shapes, *, device="cpu", below: int | None = None):
    """Random inputs of the shapes; with `below`, indices: whole numbers below it (held as floats, as in a graph)."""
    generator = torch.Generator().manual_seed(0)
    if device == "meta":
        return [torch.empty(BATCH, *s, device="meta") for s in in_shapes]
    if below is not None:
        return [torch.randint(0, below, (BATCH, *s), generator=generator).float() for s in in_shapes]
    return [torch.randn(BATCH, *s, generator=generator) for s in in_shapes]


def built(op, attrs, in_shapes):
    torch.manual_seed(0)
    return op.build_torch(attrs, in_shapes).eval()


def test_every_op_has_examples():
    missing = [op.name for op in all_ops() if op.kind != OpKind.OPAQUE and not op.examples]
    assert not missing, f"ops without examples for the registry-wide test: {missing}"


def test_an_op_that_declares_no_window_cannot_register():
    """No fact has a default: an op that says nothing of its window (or shape, costs, explanation, ONNX) is refused
    when its module is imported, instead of claiming "no window" for it."""
    from archviz.ops.base import Free, Op
    from archviz.ops.registry import all_names, register

    class Crop(Free, Op):
        name, kind = "crop_without_window", OpKind.RESHAPE

        def infer_shape(self, attrs, in_shapes):
            return (in_shapes[0][0], in_shapes[0][1] - 2, in_shapes[0][2] - 2)

        def explain(self, attrs, in_shapes, out_shape):
            return []

        def write_onnx(self, e, node, inputs):
            pass

        def build_torch(self, attrs, in_shapes):
            pass

    with pytest.raises(TypeError, match="window"):
        register(Crop)
    assert "crop_without_window" not in all_names()


@pytest.mark.parametrize("op, example", CASES, ids=IDS)
def test_output_shape_params_and_buffers_match_torch(op, example):
    attrs, in_shapes, out_shape = made(op, example)
    module = built(op, attrs, in_shapes)
    with torch.no_grad():
        output = module(*inputs_for(in_shapes, below=example.below))
    assert tuple(output.shape) == (BATCH, *out_shape)
    assert op.params(attrs, in_shapes) == sum(p.numel() for p in module.parameters())
    assert op.buffers(attrs, in_shapes) == sum(b.numel() for b in module.buffers() if b.is_floating_point())


@pytest.mark.parametrize("op, example", CASES, ids=IDS)
def test_weights_are_the_tensors_the_module_stores(op, example):
    """weights(): each tensor's name, shape and kind as torch's module registers it; params and buffers their sums."""
    attrs, in_shapes, _ = made(op, example)
    module = built(op, attrs, in_shapes)
    declared = [(w.name, tuple(w.shape), w.trainable) for w in op.weights(attrs, in_shapes)]
    stored = [(name, tuple(t.shape), True) for name, t in module.named_parameters()]
    stored += [(name, tuple(t.shape), False) for name, t in module.named_buffers() if t.is_floating_point()]
    assert declared == stored
    assert op.params(attrs, in_shapes) == sum(math.prod(shape) for _, shape, trained in declared if trained)
    assert op.buffers(attrs, in_shapes) == sum(math.prod(shape) for _, shape, trained in declared if not trained)


@pytest.mark.parametrize("op, example", CASES, ids=IDS)
def test_the_meta_device_gives_the_same_shape(op, example):
    attrs, in_shapes, out_shape = made(op, example)
    module = built(op, attrs, in_shapes).to("meta")
    with torch.no_grad():
        output = module(*inputs_for(in_shapes, device="meta"))
    assert tuple(output.shape) == (BATCH, *out_shape)


@pytest.mark.parametrize("op, example", CASES, ids=IDS)
def test_macs_are_flop_counter_flops_halved(op, example):
    if example.args.get("need_weights") is False:
        pytest.xfail("FlopCounterMode counts none of torch's fused CPU attention kernel, which attention without its "
                     "weights takes (5,120 of 6,720 FLOPs on the 5x8 example): the reference path's count holds")
    attrs, in_shapes, out_shape = made(op, example)
    module = built(op, attrs, in_shapes)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs_for(in_shapes, below=example.below))
    assert op.macs(attrs, in_shapes, out_shape) * BATCH * 2 == counter.get_total_flops()


@pytest.mark.parametrize("op, example", CASES, ids=IDS)
def test_saved_is_what_autograd_keeps(op, example):
    """saved(): what autograd keeps of the layer for its backward pass, training on the CPU, as torch's
    saved_tensors_hooks sees it, tensor by tensor (by storage): which inputs, whether the output, and the bytes of
    each tensor made for the backward pass alone; at two batch sizes, so a per-sample size is told from a per-pass
    one; an op that can work in place, in place too. The layer's inputs require grad, as a layer's inputs do inside
    a network."""
    for in_place in (False, True) if op.inplace_capable else (False,):
        args = {**example.args, "inplace": True} if in_place else example.args
        attrs, in_shapes, out_shape = made(op, dataclasses.replace(example, args=args))
        declared = op.saved(attrs, in_shapes, out_shape)
        for batch in (BATCH, BATCH + 1):
            kept_inputs, kept_output, made_bytes, view = _kept_by_autograd(op, example, attrs, in_shapes, batch)
            if in_place:  # input and output are one tensor: kept as either
                assert view and (kept_output or 0 in kept_inputs) == bool(declared.inputs or declared.output)
            else:
                assert view == op.output_is_input(attrs), "the output shares the input's storage"
                assert kept_inputs == set(declared.inputs), f"inputs kept at batch {batch}"
                assert kept_output == declared.output, f"output kept at batch {batch}"
            expected = sorted(k.elements * (batch if k.per_sample else 1) * (k.itemsize or 4) for k in declared.made)
            assert made_bytes == expected, f"tensors made for backward at batch {batch}, in place: {in_place}"


@pytest.mark.parametrize("op, example", CASES, ids=IDS)
def test_scratch_is_what_an_inference_pass_adds_while_the_layer_runs(op, example):
    """scratch(): the bytes a layer holds beyond its inputs, weights and output at the peak of its own inference
    forward pass (no_grad, eval mode), as the live-storage tracker (archviz/profile/tracker.py) counts them: max
    pool's int64 indices, a normalisation's statistics, attention's weights; at two batch sizes."""
    from archviz.profile.tracker import LiveMemoryTracker

    if op.name in SCRATCH_NOT_MODELLED:
        pytest.xfail(SCRATCH_NOT_MODELLED[op.name])
    attrs, in_shapes, out_shape = made(op, example)
    declared = op.scratch(attrs, in_shapes, out_shape)
    module = built(op, attrs, in_shapes)
    for batch in (BATCH, BATCH + 1):
        generator = torch.Generator().manual_seed(0)
        inputs = [torch.randint(0, example.below, (batch, *s), generator=generator).float() if example.below
                  else torch.randn(batch, *s, generator=generator) for s in in_shapes]
        with torch.no_grad(), LiveMemoryTracker(baseline=[*module.parameters(), *module.buffers(), *inputs]) as tracker:
            output = module(*inputs)
            memory = tracker.result()
        fresh = all(output.untyped_storage().data_ptr() != x.untyped_storage().data_ptr() for x in inputs)
        scratch = memory.peak_bytes - memory.baseline_bytes - (output.untyped_storage().nbytes() if fresh else 0)
        expected = sum(k.elements * (batch if k.per_sample else 1) * (k.itemsize or 4) for k in declared)
        assert scratch == expected, f"scratch at batch {batch}"


# Under bf16 autocast: from a float32 input (an op that autocasts copies it down), and from a bf16 input (its
# weights stay float32).
AUTOCAST_INPUTS = {"float32 input": torch.float32, "bf16 input": torch.bfloat16}
STATES_SCRATCH = [(op, example) for op, example in CASES if type(op).backward_scratch is not Op.backward_scratch]


@pytest.mark.parametrize("op, example", CASES, ids=IDS)
def test_backward_scratch_is_what_a_backward_pass_holds_for_a_moment(op, example):
    """backward_scratch(): the most bytes the op's backward holds beyond what was alive when it began (its saved
    tensors, the output's gradient) and the gradients it returns, as the live-storage tracker counts them, at two
    batch sizes; ops whose backward formulas' temporaries are not stated yet are listed, and must have some."""
    _check_backward_scratch(op, example, amp=None, input_dtype=torch.float32)


@pytest.mark.parametrize("input_dtype", AUTOCAST_INPUTS)
@pytest.mark.parametrize("op, example", STATES_SCRATCH, ids=[f"{op.name}-{i}" for i, (op, _) in
                                                               enumerate(STATES_SCRATCH)])
def test_backward_scratch_under_autocast(op, example, input_dtype):
    """The same, under bf16 autocast, for the ops that state some: their Precision says what is 2 bytes."""
    _check_backward_scratch(op, example, amp=torch.bfloat16, input_dtype=AUTOCAST_INPUTS[input_dtype])


def _check_backward_scratch(op, example, *, amp, input_dtype):
    attrs, in_shapes, out_shape = made(op, example)
    stated = Precision(input_dtype.itemsize, 4, autocast=amp is not None)
    declared = op.backward_scratch(attrs, in_shapes, out_shape, stated)
    measured = [_backward_scratch(op, example, attrs, in_shapes, batch, amp, input_dtype)
                for batch in (BATCH, BATCH + 1)]
    if measured[0] is None:
        return  # nothing to differentiate (integer inputs, no parameters)
    if op.name in BACKWARD_SCRATCH_NOT_MODELLED and not declared and max(measured) > 0:
        pytest.xfail(BACKWARD_SCRATCH_NOT_MODELLED[op.name])
    for batch, scratch in zip((BATCH, BATCH + 1), measured):
        expected = sum(k.bytes(batch=batch, activation_itemsize=_output_itemsize(op, attrs, amp, input_dtype))
                       for k in declared)
        assert max(scratch, 0) == expected, f"backward scratch at batch {batch}"


def _output_itemsize(op, attrs, amp, input_dtype) -> int:
    if amp is None:
        return input_dtype.itemsize
    return 2 if op.autocasts else 4 if op.widens_under_autocast(attrs) else input_dtype.itemsize


def _backward_scratch(op, example, attrs, in_shapes, batch, amp=None, input_dtype=torch.float32):
    from archviz.profile.tracker import LiveMemoryTracker

    torch.manual_seed(0)
    module = op.build_torch(attrs, in_shapes).train()
    if example.below is not None:
        inputs = [torch.randint(0, example.below, (batch, *s)).float() for s in in_shapes]
    else:
        leaves = [torch.randn(batch, *s, requires_grad=True) for s in in_shapes]
        inputs = [(leaf * 1).to(input_dtype) for leaf in leaves]
    saved = []  # what autograd keeps: counted from the start, and as freed when the backward pass frees it
    with torch.autocast("cpu", dtype=amp or torch.bfloat16, enabled=amp is not None), \
            torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        output = module(*inputs)
    output = output if isinstance(output, torch.Tensor) else output[0]
    wanted = [x for x in inputs if x.requires_grad] + [p for p in module.parameters() if p.requires_grad]
    if not output.requires_grad or not wanted:
        return None
    gradient = torch.randn_like(output)
    tracker = LiveMemoryTracker(baseline=[*module.parameters(), *module.buffers(), *inputs, output, gradient, *saved])
    saved.clear()
    with tracker:
        grads = torch.autograd.grad(output, wanted, gradient, allow_unused=True)
        memory = tracker.result()
    returned = {id(g.untyped_storage()): g.untyped_storage().nbytes() for g in grads if g is not None}
    return memory.peak_bytes - memory.baseline_bytes - sum(returned.values())


AUTOCAST_DEVICES = ("cpu", "cuda")  # cuda: fake CUDA tensors, whose autocast follows CUDA's lists (fake_cuda.py)


def _output_dtype_under_autocast(op, example, device, input_dtype):
    from fake_cuda import output_dtype_on_cuda

    attrs, in_shapes, _ = made(op, example)
    module = built(op, attrs, in_shapes)
    inputs = [x.to(input_dtype) if x.is_floating_point() else x for x in inputs_for(in_shapes, below=example.below)]
    if device == "cuda":
        return output_dtype_on_cuda(module, inputs)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        output = module(*inputs)
    return (output if isinstance(output, torch.Tensor) else output[0]).dtype


@pytest.mark.parametrize("device", AUTOCAST_DEVICES)
@pytest.mark.parametrize("op, example", CASES, ids=IDS)
def test_autocast_lowers_exactly_the_ops_that_say_so(op, example, device):
    """autocasts: under torch.autocast (bf16, on the CPU and on CUDA) from float32 inputs, the op's output is bf16
    exactly where it declares it runs in the lower precision; every other op keeps float32."""
    assert (_output_dtype_under_autocast(op, example, device, torch.float32) == torch.bfloat16) == op.autocasts


@pytest.mark.parametrize("device", AUTOCAST_DEVICES)
@pytest.mark.parametrize("op, example", CASES, ids=IDS)
def test_an_op_widens_2_byte_inputs_under_autocast_exactly_where_it_says_so(op, example, device):
    """widens_under_autocast: under torch.autocast (bf16, on the CPU and on CUDA) from bf16 inputs, the output is
    float32 exactly where the op says so (that device's autocast float32 list, or float32 weights promoting the
    input); others keep bf16."""
    dtype = _output_dtype_under_autocast(op, example, device, torch.bfloat16)
    assert (dtype == torch.float32) == op.widens_under_autocast(made(op, example)[0], device), dtype


@pytest.mark.parametrize("op, example", CASES, ids=IDS)
def test_a_pool_says_whether_it_takes_the_maximum_the_mean_or_the_sum(op, example):
    """reduction (which the latency model reads for a pool's CPU cost): one large element among zeros comes out
    whole from a max or sum pool and divided from a mean pool, and ones come out as one from a max or mean pool and
    as the window's count from a sum, wherever windows hold several elements."""
    assert op.reduction is not None or op.kind != OpKind.POOL
    if op.reduction is None or op.kind != OpKind.POOL:  # local response norm pools its squares across channels
        return
    attrs, in_shapes, out_shape = made(op, example)
    module = built(op, attrs, in_shapes)
    spike, ones = torch.zeros(1, *in_shapes[0]), torch.ones(1, *in_shapes[0])
    spike.view(-1)[0] = 1000.0
    with torch.no_grad():
        from_spike, from_ones = module(spike).max().item(), module(ones).max().item()
    shrinks = numel(out_shape) < numel(in_shapes[0])
    assert (from_spike == 1000.0) == (op.reduction != Reduction.MEAN or not shrinks)
    assert (from_ones == pytest.approx(1.0)) == (op.reduction != Reduction.SUM or not shrinks)


@pytest.mark.parametrize("op, example", CASES, ids=IDS)
def test_an_op_runs_at_least_the_kernels_it_declares_and_exactly_those_when_several(op, example):
    """launches + small_launches (the latency model's fixed cost per kernel): never more than the kernels torch runs
    for one inference call (aten ops that are neither views nor bare allocations; a module running none, a view, still
    pays one call), and exactly those where an op declares several (partial_conv2d's runs and gathers, rbf, LRN)."""
    attrs, in_shapes, _ = made(op, example)
    module, inputs = built(op, attrs, in_shapes).eval(), inputs_for(in_shapes, below=example.below)
    with torch.no_grad(), _KernelCount() as count:
        module(*inputs)
    declared = op.launches(attrs) + op.small_launches(attrs)
    ran = max(len(count.kernels), 1)
    assert declared == ran if declared > 1 else declared <= ran, count.kernels


class _KernelCount(TorchDispatchMode):
    ALLOCATIONS = {"empty.memory_format", "empty_strided.default", "empty_like.default", "new_empty.default"}

    def __init__(self):
        super().__init__()
        self.kernels = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        view = any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)
        if not view and str(func.__name__) not in self.ALLOCATIONS:
            self.kernels.append(func.__name__)
        return func(*args, **(kwargs or {}))


def _kept_by_autograd(op, example, attrs, in_shapes, batch):
    """(indices of the inputs kept, whether the output is, sorted bytes of every other tensor kept, whether the output
    is a view of the first input) for one forward pass in training mode; the module's parameters and buffers are left
    out."""
    torch.manual_seed(0)
    module = op.build_torch(attrs, in_shapes).train()
    generator = torch.Generator().manual_seed(0)
    if example.below is not None:
        inputs = [torch.randint(0, example.below, (batch, *s), generator=generator).float() for s in in_shapes]
    else:  # computed from a leaf, as a layer's inputs are: autograd keeps them as they are
        inputs = [torch.randn(batch, *s, generator=generator).requires_grad_() * 1 for s in in_shapes]
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        output = module(*inputs)
    output = output if isinstance(output, torch.Tensor) else output[0]

    def storage(tensor):
        return tensor.untyped_storage().data_ptr()

    weights = {storage(t) for t in (*module.parameters(), *module.buffers())}
    by_input = {storage(x): i for i, x in enumerate(inputs)}
    seen, kept_inputs, kept_output, made_bytes = set(), set(), False, []
    for tensor in kept:
        key = storage(tensor)
        if key in seen or key in weights:
            continue
        seen.add(key)
        if key == storage(output):
            kept_output = True
        elif key in by_input:
            kept_inputs.add(by_input[key])
        else:
            made_bytes.append(tensor.untyped_storage().nbytes())
    return kept_inputs, kept_output, sorted(made_bytes), storage(output) == storage(inputs[0])


@pytest.mark.parametrize("op, example", CASES, ids=IDS)
def test_the_window_is_the_inputs_that_reach_an_output(op, example):
    attrs, in_shapes, out_shape = made(op, example)
    in_shape = in_shapes[0]
    if len(in_shape) != 3 or len(out_shape) != 3:
        pytest.skip("no spatial map in and out: the receptive field is whole (flatten) or not spatial")
    if op.name in REARRANGES_AXES:
        pytest.skip(f"{op.name} {REARRANGES_AXES[op.name]}: the receptive field stops being spatial")
    window = op.window(attrs, in_shapes)
    target = (out_shape[1] // 2, out_shape[2] // 2)
    reached = _reaching(built(op, attrs, in_shapes), in_shapes, target)
    if window is None:
        expected = [(t, t) for t in target] if out_shape[1:] == in_shape[1:] else None
        if expected is None and op.name in MIXES_POSITIONS:
            pytest.xfail(MIXES_POSITIONS[op.name])
        if expected is None:
            pytest.fail(f"{op.name} changes the map's size {fmt_shape(in_shape[1:])} -> {fmt_shape(out_shape[1:])} "
                        "without declaring a window")
    else:
        expected = [
            (max(start, 0), min(start + kernel - 1, size - 1))
            for start, kernel, size in (
                (round(t * s - p), k, n) for t, s, p, k, n in zip(target, window.stride, window.padding, window.kernel,
                                                                  in_shape[1:]))
        ]
    if reached != expected and op.name in MIXES_POSITIONS:
        pytest.xfail(MIXES_POSITIONS[op.name])
    assert reached == expected, f"output position {target} is reached from rows/columns {reached}, not {expected}"


def _reaching(module, in_shapes, target):
    """The (first, last) input row and column whose change moves the output at `target` (any channel)."""
    x = inputs_for(in_shapes)
    with torch.no_grad():
        base = module(*x)[..., target[0], target[1]]
        rows, columns = [], []
        for row in range(in_shapes[0][1]):
            for column in range(in_shapes[0][2]):
                moved = [t.clone() for t in x]
                moved[0][..., row, column] += PERTURBATION
                if not torch.allclose(module(*moved)[..., target[0], target[1]], base, rtol=0, atol=1e-6,
                                      equal_nan=True):  # sqrt of a negative input is NaN, moved or not
                    rows.append(row)
                    columns.append(column)
    assert rows, f"no input position reaches output position {target}"
    return [(min(rows), max(rows)), (min(columns), max(columns))]


@pytest.mark.parametrize("op, example", CASES, ids=IDS)
def test_explain_names_the_real_output_shape(op, example):
    attrs, in_shapes, out_shape = made(op, example)
    steps = op.explain(attrs, in_shapes, out_shape)
    text = " ".join(f"{step.arithmetic} {step.value}" for step in steps)
    assert fmt_shape(out_shape) in text, text
    wrong = [step.arithmetic for step in steps if "same as input" in step.arithmetic and in_shapes[0] != out_shape]
    assert not wrong, f"explain says the output is the input's shape: {wrong}"


@pytest.mark.parametrize("op, example", CASES, ids=IDS)
def test_onnx_round_trip(op, example, tmp_path):
    """Written to ONNX with torch's weights, checked by onnx.checker, run by onnx's reference runtime within 1e-5 of
    torch, and read back to the same figures."""
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    import archviz
    from archviz.onnx.export import export_onnx
    from archviz.onnx.read import read_onnx

    attrs, in_shapes, _ = made(op, example)
    if any(shape != in_shapes[0] for shape in in_shapes):
        pytest.skip("inputs of different shapes: one ONNX graph input cannot feed them (tests/data/onnx covers joins)")
    graph = _one_layer_graph(op, example)
    model = to_torch_with_random_weights(graph)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    path = export_onnx(graph, tmp_path / "op.onnx", checkpoint=tmp_path / "weights.pt")
    onnx.checker.check_model(str(path), full_check=True)
    x = inputs_for([graph.input_shape], below=example.below)[0]
    (ours,) = ReferenceEvaluator(str(path)).run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert ours.shape == expected.shape
    if op.name not in REFERENCE_RUNTIME_DEPARTS:
        assert (np.isnan(ours) == np.isnan(expected)).all()  # sqrt of a negative input is NaN in both
        assert np.nanmax(abs(ours - expected)) <= 1e-5 + 1e-4 * np.nanmax(abs(expected))

    def figures(report):  # the op may read back as its ONNX equivalent: reshape as flatten, stochastic depth as identity
        return [(s.out_shape, s.params, s.buffers, s.macs, s.other_ops) for s in report.layers]

    back = read_onnx(path)
    assert figures(archviz.inspect(back)) == figures(archviz.inspect(graph))
    assert same_layers(back, graph) or op.name in READS_BACK_AS, [_canonical(n) for n in back.nodes]


def same_layers(ours, theirs, *, but: tuple[str, ...] = ()) -> bool:
    """The same ops with the same arguments (those in `but` aside), in order, each argument in one form: 3 and
    [3, 3] are one kernel size, dim -1 of a 4-d tensor is dim 3, an output side of null is the input's, padding
    'same' is the padding it gives where that is the same on both sides."""
    def layers(graph):
        return [(op, {k: v for k, v in attrs.items() if k not in but}) for op, attrs in map(_canonical, graph.nodes)]

    return layers(ours) == layers(theirs)


def _canonical(node) -> tuple:
    from archviz.ops import ArgKind, get_op
    from archviz.ops.base import pair
    from archviz.ops.conv import conv_axes

    attrs = dict(node.attrs)
    for arg in get_op(node.op).args:
        value = attrs.get(arg.name)
        if arg.kind == ArgKind.PADDING and isinstance(value, str):
            axes = conv_axes(attrs, node.in_shapes[0])
            if all(axis.padding_after in (None, axis.padding) for axis in axes):
                value = tuple(axis.padding for axis in axes)
        if arg.kind in (ArgKind.PAIR, ArgKind.NONNEG_PAIR, ArgKind.OPTIONAL_PAIR, ArgKind.PADDING) and value is not None \
                and not isinstance(value, str):
            value = tuple(pair(value))
        if arg.kind == ArgKind.OPTIONAL_PAIR and value is not None:
            value = tuple(size if side is None else side for side, size in zip(value, node.in_shapes[0][1:]))
        if arg.kind == ArgKind.SHAPE and value is not None:
            value = tuple(value)
        if arg.kind == ArgKind.SIGNED_INT and arg.name.endswith("dim") and value is not None and value < 0:
            value += len(node.in_shapes[0]) + 1  # torch counting, the batch included
        attrs[arg.name] = value
    return node.op, attrs


def _one_layer_graph(op, example):
    """A graph of this one layer, every input of it the graph's input."""
    from types import MappingProxyType

    from archviz.graph.ir import INPUT, Graph
    from archviz.graph.make import make_node

    layer = make_layer(op, example.args, example.inputs)
    node = make_node("layer", layer, [INPUT] * len(layer.in_shapes))
    return Graph(name=op.name, description="", input_shape=layer.in_shapes[0], nodes=(node,), scopes=(),
                 output=node.name, params=MappingProxyType({}))


def to_torch_with_random_weights(graph):
    """to_torch's model with weights unlike their first fill (no zero bias or unit scale hides a mix-up)."""
    from archviz.torch_build import to_torch

    model = to_torch(graph).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + (0.5 if "running_var" in name else -0.5))
    return model


@pytest.mark.parametrize("op, example", CASES, ids=IDS)
def test_the_module_traces_back_to_the_op(op, example):
    """The op's torch module inside a model, traced as any PyTorch code is: one layer of this op, the same figures."""
    import archviz

    graph = _one_layer_graph(op, example)
    if len(graph.nodes[0].inputs) > 1:
        pytest.skip("a join takes several tensors: traced through the models of tests/test_trace.py")
    from archviz.torch_build import to_torch

    traced = archviz.load(to_torch(graph, device="meta"), input=graph.input_shape)

    def figures(g):
        report = archviz.inspect(g)
        return [(s.op, s.out_shape, s.params, s.buffers, s.macs, s.other_ops) for s in report.layers]

    if figures(traced) != figures(graph) and op.name in TRACES_AS:
        ours, theirs = (archviz.inspect(g).totals for g in (traced, graph))
        assert (ours.params, ours.buffers, ours.macs, ours.other_ops) == (
            theirs.params, theirs.buffers, theirs.macs, theirs.other_ops)
        assert traced.by_name[traced.output].out_shape == graph.nodes[0].out_shape
        pytest.xfail(TRACES_AS[op.name])
    assert figures(traced) == figures(graph)
    assert same_layers(traced, graph), [_canonical(n) for n in traced.nodes]


# Where a function's argument is not the op's argument of the same name, as the op holds it.
CALL_ARGUMENTS = {
    "permute": lambda attrs: {"dims": (0, *attrs["dims"]), **_swap(attrs["dims"])},  # torch's dims count the batch
    "reshape": lambda attrs: {"shape": (-1, *attrs["shape"])},  # and its shapes
    "expand": lambda attrs: {"sizes": (-1, *attrs["shape"])},  # x.expand(-1, *shape): a size per dim, batch kept
    "global_avgpool2d": lambda attrs: {"dim": (2, 3)},  # x.mean((2, 3)): the dims it averages are implied
    "instance_norm": lambda attrs: {"use_input_stats": not attrs["track_running_stats"]},  # running stats at inference
    "pad": lambda attrs: {"pad": pad_list(attrs)},  # F.pad's list: last dim first
}


def _swap(dims) -> dict:
    """transpose's dim0 and dim1 (swapaxes's axis0 and axis1) where a permutation swaps two dims."""
    moved = [d for position, d in enumerate(dims, start=1) if d != position]
    return {"dim0": moved[0], "dim1": moved[1], "axis0": moved[0], "axis1": moved[1]} if len(moved) == 2 else {}


TENSORS = {"weight", "bias", "running_mean", "running_var"}  # a function's tensor arguments: the op's weights
called_function = None
FUNCTIONAL = [(op, example, path) for op, example in CASES if len(example.inputs) == 1
              for path in op.torch_calls.functions]
FUNCTIONAL_IDS = [f"{op.name}-{op.examples.index(example)}-{path}" for op, example, path in FUNCTIONAL]


class _Functional(torch.nn.Module):
    """A model whose forward calls one function or tensor method, with the op's weights as its parameters."""

    def __init__(self, path, arguments, varargs, weights, indices=False):
        super().__init__()
        self.indices = indices  # an embedding's input: the model turns its float input into indices first
        from archviz.trace.mapping import resolve

        global called_function  # called by its name, as model code calls a function it imported
        self.path, self.arguments, self.varargs = path, arguments, varargs
        self.method = path.removeprefix("Tensor.") if path.startswith("Tensor.") else None
        called_function = None if self.method else resolve(path)
        self.tensors = torch.nn.ParameterDict({w.name: torch.nn.Parameter(torch.randn(w.shape))
                                               for w in weights if w.trainable})
        self.kept = [w.name for w in weights if not w.trainable]  # running statistics: buffers, as a module keeps them
        for name in self.kept:
            self.register_buffer(name, torch.rand(next(w.shape for w in weights if w.name == name)) + 0.5)

    def forward(self, x):
        arguments = {**self.arguments, **{name: self.tensors[name] for name in self.tensors},
                     **{name: getattr(self, name) for name in self.kept}}
        if self.indices:
            x = x.long()
        if self.method:
            return getattr(x, self.method)(*self.varargs, **arguments)
        return called_function(x, *self.varargs, **arguments)


def _functional(op, attrs, in_shapes, path, *, indices=False):
    """The model calling `path` with the op's arguments, or None when the call needs one the op does not hold."""
    signature = op.torch_calls.functions[path]
    given = {**attrs, **CALL_ARGUMENTS.get(op.name, lambda a: {})(attrs)}
    weights = [w for w in op.weights(attrs, in_shapes) if w.name in signature.names]
    arguments, varargs = {}, ()
    for name in signature.names[1:]:
        if name.startswith("*"):
            varargs = tuple(given[name[1:]])
        elif name in TENSORS:
            if name not in {w.name for w in weights} and name not in signature.defaults:
                return None
        elif name in given:
            arguments[name] = list(given[name]) if isinstance(given[name], tuple) else given[name]
        elif name not in signature.defaults:
            return None
    if signature.names[0] != "input":
        return None
    return _Functional(path, arguments, varargs, weights, indices)


@pytest.mark.parametrize("op, example, path", FUNCTIONAL, ids=FUNCTIONAL_IDS)
def test_the_functional_form_traces_back_to_the_op(op, example, path):
    """Each function and tensor method the op matches (torch_calls), called as PyTorch code calls it with the
    example's arguments (and its weights as the model's parameters), traces back to the op with the same figures."""
    import archviz

    attrs, in_shapes, out_shape = made(op, example)
    model = _functional(op, attrs, in_shapes, path, indices=example.below is not None)
    if model is None:
        pytest.skip(f"{path} takes an argument this example of {op.name} does not give")
    traced = archviz.load(model, input=in_shapes[0])
    if example.below is not None:  # x.long() first: a free layer without a formula, then the op
        cast = traced.nodes[0]
        assert (cast.op, cast.attrs["target"], cast.attrs["measured_macs"]) == ("opaque", "Tensor.long", 0)
        rest = tuple(dataclasses.replace(node, inputs=("input",)) for node in traced.nodes[1:])
        traced = dataclasses.replace(traced, nodes=rest, scopes=())
    mine, theirs = archviz.inspect(traced), archviz.inspect(_one_layer_graph(op, example))
    figures = lambda report: [(s.op, s.out_shape, s.params, s.macs, s.other_ops) for s in report.layers]  # noqa
    if op.name not in TRACES_AS:
        assert figures(mine) == figures(theirs)
        in_place = ("inplace",) if path.endswith("_") else ()  # relu_ is relu in place, whatever the example says
        assert same_layers(traced, _one_layer_graph(op, example), but=in_place), [_canonical(n) for n in traced.nodes]
    assert (mine.totals.params, mine.totals.macs, mine.totals.other_ops) == (
        theirs.totals.params, theirs.totals.macs, theirs.totals.other_ops)
    assert mine.layers[-1].out_shape == out_shape


@pytest.mark.parametrize("op, example", CASES, ids=IDS)
def test_export_spec_round_trip(op, example):
    """Written as spec YAML (export-spec) and validated again: the same layer, arguments and figures."""
    from archviz.graph.build import validate
    from archviz.render.spec_yaml import graph_to_spec
    from archviz.spec.model import read_spec_text

    graph = _one_layer_graph(op, example)
    if len(set(graph.nodes[0].in_shapes)) > 1:
        pytest.skip("inputs of different shapes: one spec input cannot feed them")
    again = validate(read_spec_text(graph_to_spec(graph, when=None), origin=f"{op.name}.yaml"))
    (node,), (back,) = graph.nodes, again.nodes
    assert (back.op, back.out_shape, dict(back.attrs)) == (node.op, node.out_shape, dict(node.attrs))


def test_the_receptive_field_through_an_upsampling_op_is_what_torch_reaches():
    """After a pixel shuffle the jump is 1/2 and a 2x2 conv's field 7.5 pixels: its units reach 7 or 8 whole input
    pixels, measured on the built model; archviz reports the 8."""
    import archviz
    from archviz.torch_build import to_torch

    report = archviz.inspect(Path(__file__).parent / "data" / "tiny_sr.yaml")
    last = report.layers[-1]
    assert (last.receptive_field, last.jump) == ((8, 8), (0.5, 0.5))
    model = to_torch(report.graph).eval()
    spans = [_reaching(model, [report.graph.input_shape], (t, t)) for t in (7, 8)]
    assert {rows[1] - rows[0] + 1 for rows, _ in spans} == {7, 8}


def test_an_activation_is_transcendental_where_its_formula_has_an_exp_log_or_tanh():
    """Op.transcendental (which the latency model reads for an activation's CPU cost) agrees with the formula each
    activation states for its other ops: an exp, log, tanh or sigmoid per element."""
    from archviz.ops.activation import AlongDim, _Activation

    for op in all_ops():
        if isinstance(op, _Activation) and not isinstance(op, AlongDim):
            stated = re.search(r"\b(exp|exps|log|tanh|sigmoid)\b", op.ops_reason) is not None
            assert op.transcendental == stated, op.name
        elif isinstance(op, AlongDim):
            assert op.transcendental, op.name
        else:  # beyond activations, local response norm raises to the power beta
            assert op.transcendental == ("power" in (type(op).__doc__ or "") and op.kind == OpKind.NORM), op.name
