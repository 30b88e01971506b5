"""Hypothesis strategies: `architectures()` draws the YAML text of a random, valid archviz spec.

Every shape is tracked while a network is drawn, with torch's own output-size rules written here apart from
archviz's formulas: torch.nn.Conv2d's `floor((size + 2p - d(k-1) - 1) / s) + 1` (torch/nn/modules/conv.py docs) and
ATen's `pooling_output_shape` (aten/src/ATen/native/Pool.h) for max and average pooling, ceil_mode included. Only
layers that fit are drawn, so a spec from this strategy is a network torch runs; archviz refusing one, or predicting
another shape, params or MACs than torch, is a bug in archviz (or in this file).

What the networks hold: conv2d (square and non-square kernels, stride, padding as an int, a pair, 'same' or 'valid',
dilation, groups, bias), max and average pooling (ceil_mode, padding up to half the kernel, dilation,
count_include_pad), adaptive and global average pooling, batch norm (affine or not), local response norm, every
activation (some in place), dropout, identity, flatten and linear layers (on vectors, on (L, F) sequences and on the
last dim of a feature map), residual adds (identity or projection shortcuts), concats along any dim, nested
sequentials and groups, blocks with params (a residual block whose projection is chosen by `if:` on in_channels and
stride, an inception-like block, an inline block, a block reading in_height), named and numbered entries, `repeat`
(with `i`), `if`, and spec `params`. tests/test_agreement.py checks that a few hundred examples reach all of it.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import strategies as st

Shape = tuple[int, ...]
MAX_CHANNELS = 16  # channels a drawn layer produces: keeps a real forward pass on the CPU cheap
MAX_SIDE = 48  # height and width never grow past this (padding, adaptive pooling and concats can grow them)
MAX_FEATURES = 16  # out_features of a linear layer
MAX_DEPTH = 3  # nesting of sequentials, groups, joins and blocks
MAX_ENTRIES = 40  # layer entries drawn per network, all levels together
ACTIVATIONS = ("relu", "relu6", "leaky_relu", "sigmoid", "tanh", "gelu", "silu", "softmax")


# --- torch's output-size rules, written apart from archviz's -------------------------------------------------------

def conv_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """torch.nn.Conv2d along one axis; 0 when the dilated kernel is larger than the padded input."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    return span // stride + 1 if span >= 0 else 0


def pool_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    """ATen's pooling_output_shape: div_rtn(size + 2p - d(k-1) - 1 (+ s-1 with ceil_mode), s) + 1, and with ceil_mode
    one less when the last window would start past the input and its left padding. Below 1: torch refuses it."""
    out = (size + 2 * padding - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def fit_conv(shape: Shape, target: Shape) -> dict:
    """A stride-1 conv from a C x H x W map to exactly `target`: a 'valid' kernel to shrink, padding to grow."""
    kernel, padding = [], []
    for size, want in zip(shape[1:], target[1:]):
        pad = max(0, -(-(want - size) // 2))
        kernel.append(size + 2 * pad - want + 1)
        padding.append(pad)
    args: dict[str, Any] = {"out_channels": target[0], "kernel_size": kernel}
    if any(padding):
        args["padding"] = padding
    return {"conv2d": args}


# --- blocks: written once, used by name -----------------------------------------------------------------------------

BLOCKS: dict[str, dict] = {
    # ResNet's basic block: k x k convs, the projection shortcut only where stride or width change (an `if:`)
    "res": {
        "description": "residual block with a projection shortcut where the shape changes",
        "params": {"planes": "required", "stride": 1, "k": 3, "affine": True},
        "layers": [
            {"add": [
                [
                    {"conv2d": {"out_channels": "$planes", "kernel_size": "$k", "stride": "$stride",
                                "padding": "$k // 2", "bias": False}, "name": "conv1"},
                    {"batchnorm2d": {"affine": "$affine"}, "name": "bn1"},
                    "relu",
                    {"conv2d": {"out_channels": "$planes", "kernel_size": "$k", "padding": "same", "bias": False},
                     "name": "conv2"},
                    {"batchnorm2d": {}, "name": "bn2"},
                ],
                [
                    {"sequential": [
                        {"conv2d": {"out_channels": "$planes", "kernel_size": 1, "stride": "$stride", "bias": False}},
                        "batchnorm2d",
                    ], "name": "downsample", "if": "$stride != 1 or in_channels != planes"},
                ],
            ], "name": "join"},
            {"relu": {"inplace": True}},
        ],
    },
    # inception-like: a 1x1 branch, a factorised 1x3 + 3x1 branch and a pooling branch, concatenated
    "mix": {
        "params": {"a": "required", "b": "required"},
        "layers": [
            {"concat": [
                [{"conv2d": {"out_channels": "$a", "kernel_size": 1}, "name": "b1"}],
                [
                    {"conv2d": {"out_channels": "$b", "kernel_size": [1, 3], "padding": [0, 1]}, "name": "b2a"},
                    {"conv2d": {"out_channels": "$b", "kernel_size": [3, 1], "padding": [1, 0]}, "name": "b2b"},
                ],
                [{"maxpool2d": {"kernel_size": 3, "stride": 1, "padding": 1}, "name": "b3"}],
            ], "name": "cat"},
        ],
    },
    # spliced into the caller's numbering when used without a name
    "cbr": {
        "inline": True,
        "params": {"out": "required", "k": 3},
        "layers": [
            {"conv2d": {"out_channels": "$out", "kernel_size": "$k", "padding": "same"}},
            "batchnorm2d",
            "relu6",
        ],
    },
    # global max pooling through the shape of the tensor flowing in
    "gmax": {
        "params": {},
        "layers": [{"maxpool2d": {"kernel_size": ["$in_height", "$in_width"]}, "name": "pool"}],
    },
}


class _NoAliases(yaml.SafeDumper):
    """Spec files may not hold YAML anchors and aliases, which safe_dump writes for a repeated object."""

    def ignore_aliases(self, data):
        return True


def dump(spec: dict) -> str:
    return yaml.dump(spec, Dumper=_NoAliases, sort_keys=False, default_flow_style=None, width=120)


# --- the drawing ----------------------------------------------------------------------------------------------------

class _Drawer:
    """Draws layer entries one by one, tracking the shape (without the batch) that flows out of each."""

    def __init__(self, draw, width: int):
        self.draw = draw
        self.width = width  # the spec's `params: {width: ...}`
        self.names = 0
        self.entries = 0
        self.blocks: list[str] = []

    # helpers
    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def int_(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, max(low, high)))

    def flag(self) -> bool:
        return self.draw(st.booleans())

    def new_name(self) -> str:
        self.names += 1
        return f"n{self.names}"

    def use_block(self, name: str) -> None:
        if name not in self.blocks:
            self.blocks.append(name)

    # lists
    def chain(self, shape: Shape, depth: int, length: int, *, keep_rank: bool = False) -> tuple[list, Shape]:
        entries = []
        for _ in range(length):
            entry, shape = self.entry(shape, depth, keep_rank=keep_rank)
            entries.append(entry)
        return entries, shape

    def entry(self, shape: Shape, depth: int, *, keep_rank: bool = False) -> tuple[Any, Shape]:
        """One entry, maybe named, repeated or conditional, and the shape after it."""
        self.entries += 1
        nested = depth < MAX_DEPTH and self.entries < MAX_ENTRIES
        if len(shape) == 3:
            kinds = ["conv"] * 5 + ["maxpool", "avgpool", "bn", "bn", "act", "act", "dropout", "identity", "adaptive",
                                    "linear", "lrn"]
            if nested:
                kinds += ["add", "add", "concat", "concat", "sequential", "group", "res", "res", "mix", "cbr",
                          "gmax", "repeat"]
            if not keep_rank:
                kinds += ["flatten"]
        else:
            kinds = ["linear"] * 3 + ["act", "act", "dropout", "identity"]
            if nested:
                kinds += ["add", "concat", "sequential", "group"]
            if not keep_rank:
                kinds += ["flatten"]
        kind = self.pick(kinds)
        entry, out = getattr(self, f"draw_{kind}")(shape, depth)
        if isinstance(entry, str):
            entry = {entry: None} if self.flag() else entry
        if isinstance(entry, dict) and "name" not in entry and kind not in ("group", "repeat") and self.flag():
            entry = {**entry, "name": self.new_name()}
        if isinstance(entry, dict) and self.int_(0, 9) == 0:
            condition, holds = self.condition(shape)
            entry = {**entry, "if": condition}
            if not holds:
                out = shape
        return entry, out

    def condition(self, shape: Shape) -> tuple[str, bool]:
        """An `if:` expression over the spec's params and the incoming shape, and whether it holds."""
        threshold = self.int_(1, 12)
        if len(shape) == 3 and self.flag():
            return f"$in_channels == {threshold} or in_height < {threshold}", (
                shape[0] == threshold or shape[1] < threshold)
        return f"$width > {threshold}", self.width > threshold

    # --- C x H x W ops ---------------------------------------------------------------------------------------------
    def draw_conv(self, shape, depth):
        c, h, w = shape
        groups = self.pick([1, 1, 1, *[g for g in range(2, c + 1) if c % g == 0]])
        out = groups * self.int_(1, MAX_CHANNELS // groups)
        dilation = self.pick([1, 1, 1, 2, 3, [1, 2], [2, 1]])
        dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
        style = self.pick(["int", "int", "pair", "same", "valid"])
        stride = 1 if style == "same" else self.pick([1, 1, 2, 3, [1, 2], [2, 1]])
        sh, sw = (stride, stride) if isinstance(stride, int) else stride
        padding: Any = {"int": self.int_(0, 3), "pair": [self.int_(0, 3), self.int_(0, 2)]}.get(style, style)
        ph, pw = {"same": (0, 0), "valid": (0, 0)}.get(style) or (
            (padding, padding) if isinstance(padding, int) else padding)
        if style != "same":  # the dilated kernel must fit the padded input
            longest_h, longest_w = (h + 2 * ph - 1) // dh + 1, (w + 2 * pw - 1) // dw + 1
            kh = self.int_(1, min(7, longest_h))
            kw = kh if self.flag() and kh <= longest_w else self.int_(1, min(7, longest_w))
            out_hw = (conv_size(h, kh, sh, ph, dh), conv_size(w, kw, sw, pw, dw))
        else:  # 'same' pads d(k-1) in all: any kernel fits
            kh = self.int_(1, 6)
            kw = kh if self.flag() else self.int_(1, 6)
            out_hw = (h, w)
        if max(out_hw) > MAX_SIDE:  # padding grew an axis too far (so that axis is long): no padding there
            ph, pw = [0 if size > MAX_SIDE else pad for size, pad in zip(out_hw, (ph, pw))]
            padding = [ph, pw]
            out_hw = (conv_size(h, kh, sh, ph, dh), conv_size(w, kw, sw, pw, dw))
        assert 1 <= min(out_hw) and max(out_hw) <= MAX_SIDE, (shape, kh, kw, padding)  # our own invariant
        args: dict[str, Any] = {"out_channels": out, "kernel_size": kh if kh == kw and self.flag() else [kh, kw]}
        if out == c and groups == 1 and self.int_(0, 3) == 0:
            args["out_channels"] = "$in_channels"
        elif out == self.width and groups == 1:
            args["out_channels"] = "$width"
        if stride != 1 or self.flag():
            args["stride"] = stride
        if padding != 0 or self.flag():
            args["padding"] = padding
        if dilation != 1 or self.int_(0, 3) == 0:
            args["dilation"] = dilation
        if groups != 1 or self.int_(0, 3) == 0:
            args["groups"] = groups
        if self.flag():
            args["bias"] = self.flag()
        if self.int_(0, 4) == 0:
            args["in_channels"] = c
        return {"conv2d": args}, (out, *out_hw)

    def _pool(self, shape, op):
        c, h, w = shape
        ceil_mode = self.flag()
        dilation = self.pick([1, 1, 1, 2, [1, 2]]) if op == "maxpool2d" else 1
        dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
        kernel = self.pick(["int", "pair"])
        kh = self.int_(1, min(5, h + 2))
        kw = kh if kernel == "int" else self.int_(1, min(5, w + 2))
        ph, pw = self.int_(0, kh // 2), self.int_(0, kw // 2)
        stride = self.pick([None, 1, 2, 3, [1, 2], [2, 3]])
        sh, sw = (kh, kw) if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
        out_hw = (pool_size(h, kh, sh, ph, dh, ceil_mode), pool_size(w, kw, sw, pw, dw, ceil_mode))
        if max(out_hw) > MAX_SIDE:  # padding grew a long axis by one: no padding
            ph = pw = 0
            out_hw = (pool_size(h, kh, sh, 0, dh, ceil_mode), pool_size(w, kw, sw, 0, dw, ceil_mode))
        if min(out_hw) < 1:  # torch refuses a window larger than the (padded) input: pool 1x1 instead
            kernel, kh, kw, ph, pw = "int", 1, 1, 0, 0
            sh, sw = (1, 1) if stride is None else (sh, sw)
            out_hw = (pool_size(h, 1, sh, 0, dh, ceil_mode), pool_size(w, 1, sw, 0, dw, ceil_mode))
        args: dict[str, Any] = {"kernel_size": kh if kernel == "int" else [kh, kw]}
        if stride is not None:
            args["stride"] = stride
        if (ph, pw) != (0, 0) or self.flag():
            args["padding"] = ph if ph == pw else [ph, pw]
        if ceil_mode or self.flag():
            args["ceil_mode"] = ceil_mode
        if op == "maxpool2d" and (dilation != 1 or self.flag()):
            args["dilation"] = dilation
        if op == "avgpool2d":
            include = self.flag()
            if not include or self.flag():
                args["count_include_pad"] = include
        return {op: args}, (c, *out_hw)

    def draw_maxpool(self, shape, depth):
        return self._pool(shape, "maxpool2d")

    def draw_avgpool(self, shape, depth):
        return self._pool(shape, "avgpool2d")

    def draw_adaptive(self, shape, depth):
        c, h, w = shape
        if self.int_(0, 3) == 0:
            return self.pick(["global_avgpool2d", "gap"]), (c, 1, 1)
        oh, ow = self.int_(1, min(h + 2, MAX_SIDE)), self.int_(1, min(w + 2, MAX_SIDE))
        form = self.pick(["int", "pair", "keep_h", "keep_w"])
        if form == "int":
            return {"adaptive_avgpool2d": {"output_size": oh}}, (c, oh, oh)
        if form == "keep_h":
            return {"adaptive_avgpool2d": {"output_size": [None, ow]}}, (c, h, ow)
        if form == "keep_w":
            return {"adaptive_avgpool2d": {"output_size": [oh, None]}}, (c, oh, w)
        return {"adaptive_avgpool2d": {"output_size": [oh, ow]}}, (c, oh, ow)

    def draw_bn(self, shape, depth):
        if self.int_(0, 2) == 0:
            return "batchnorm2d", shape
        args: dict[str, Any] = {"affine": self.flag()}
        if shape[1] * shape[2] > 1 and self.int_(0, 5) == 0:  # batch statistics need two values per channel
            args["track_running_stats"] = False
        if self.flag():
            args["num_features"] = shape[0]
        return {self.pick(["batchnorm2d", "bn"]): args}, shape

    def draw_lrn(self, shape, depth):
        return {self.pick(["local_response_norm", "lrn"]): {"size": self.int_(1, 5)}}, shape

    def draw_act(self, shape, depth):
        name = self.pick(list(ACTIVATIONS))
        args: dict[str, Any] = {}
        if name == "softmax":
            rank = len(shape) + 1
            args["dim"] = self.pick([d for d in range(-rank + 1, rank) if d != 0])
        elif name == "leaky_relu" and self.flag():
            args["negative_slope"] = self.pick([0.01, 0.2])
        elif name == "gelu" and self.flag():
            args["approximate"] = self.pick(["none", "tanh"])
        if name in ("relu", "relu6", "leaky_relu", "silu") and self.flag():
            args["inplace"] = True
        return ({name: args} if args else name), shape

    def draw_dropout(self, shape, depth):
        return ({"dropout": {"p": self.pick([0.1, 0.5])}} if self.flag() else "dropout"), shape

    def draw_identity(self, shape, depth):
        return "identity", shape

    def draw_linear(self, shape, depth):
        """On a vector, a sequence, or the last dim (the width) of a feature map."""
        out = self.int_(1, MAX_FEATURES if len(shape) < 3 else MAX_SIDE // 2)
        args: dict[str, Any] = {self.pick(["out_features", "units"]): out}
        if self.flag():
            args["bias"] = self.flag()
        if self.int_(0, 4) == 0:
            args["in_features"] = shape[-1]
        return {self.pick(["linear", "linear", "fc"]): args}, (*shape[:-1], out)

    def draw_flatten(self, shape, depth):
        rank = len(shape) + 1  # torch's dims, the batch being 0
        start = self.int_(1, rank - 1)
        end = self.int_(start, rank - 1)
        if self.flag():
            end -= rank  # the same dim counted from the end
        first, stop = start - 1, (end % rank)
        numel = 1
        for size in shape[first:stop]:
            numel *= size
        out = (*shape[:first], numel, *shape[stop:])
        if (start, end) == (1, -1) and self.flag():
            return "flatten", out
        return {"flatten": {"start_dim": start, "end_dim": end}}, out

    # --- structure -------------------------------------------------------------------------------------------------
    def draw_sequential(self, shape, depth):
        entries, out = self.chain(shape, depth + 1, self.int_(1, 3), keep_rank=True)
        return {"sequential": entries}, out

    def draw_group(self, shape, depth):
        entries, out = self.chain(shape, depth + 1, self.int_(1, 3), keep_rank=True)
        return {"group": entries}, out

    def draw_add(self, shape, depth):
        first, out = self.chain(shape, depth + 1, self.int_(1, 3), keep_rank=True)
        if len(shape) < 3 and shape[:-1] != out[:-1]:  # rows concatenated: no other branch can match them
            return {"sequential": first}, out
        branches = [first]
        for _ in range(self.int_(1, 2)):
            branches.append(self.matching_branch(shape, out, depth))
        return {"add": branches}, out

    def matching_branch(self, shape: Shape, out: Shape, depth: int) -> list:
        """A branch from `shape` to exactly `out`: the identity, shape-keeping layers, or a fitted conv or linear."""
        if shape == out and self.flag():
            return [] if self.flag() else [self.draw_act(shape, depth)[0]]
        if len(shape) == 3:
            branch = [fit_conv(shape, out)]
            if self.flag():
                branch.append(self.draw_bn(out, depth)[0])
            return branch
        return [{"linear": {"out_features": out[-1]}}]  # rank-keeping chains of vectors change the last dim only

    def draw_concat(self, shape, depth):
        first, out = self.chain(shape, depth + 1, self.int_(1, 2), keep_rank=True)
        if len(shape) < 3 and shape[:-1] != out[:-1]:  # rows concatenated: no other branch can match them
            return {"sequential": first}, out
        rank = len(out) + 1  # torch's, with the batch
        if len(out) == 3:
            axis = self.pick([0, 0, 0, 1, 2])  # mostly channels
            if axis and out[axis] >= MAX_SIDE:  # no room along this side
                axis = 0
            cap = MAX_CHANNELS * 2 if axis == 0 else MAX_SIDE
        else:
            axis = self.pick([0, len(out) - 1])
            cap = 4 * MAX_FEATURES
        branches, total = [first], out[axis]
        for _ in range(self.int_(1, 2)):
            size = min(self.int_(1, 8), max(1, cap - total))  # sides stay within the cap, channels nearly
            target = (*out[:axis], size, *out[axis + 1:])
            if len(out) == 3:
                branch = [fit_conv(shape, target)] if shape != target or self.flag() else []
            elif axis == len(out) - 1:
                branch = [{"linear": {"out_features": size}}]
            else:  # along the rows of a sequence: the rows' features must match
                branch, size = self.matching_branch(shape, out, depth), out[axis]
            branches.append(branch)
            total += size
            if total >= cap:
                break
        dim = axis + 1 if self.flag() else axis + 1 - rank
        result = (*out[:axis], total, *out[axis + 1:])
        if dim == 1 and self.flag():
            return {self.pick(["concat", "cat"]): branches}, result
        return {"concat": {"dim": dim, "branches": branches}}, result

    def draw_res(self, shape, depth):
        self.use_block("res")
        c, h, w = shape
        planes = self.int_(1, MAX_CHANNELS)
        stride, k = self.pick([1, 1, 2]), self.pick([1, 3, 3, 5])
        args: dict[str, Any] = {"planes": planes}
        if planes == c and self.flag():
            args["planes"] = "$in_channels"
        elif planes == self.width and self.flag():
            args["planes"] = "$width"
        if stride != 1 or self.flag():
            args["stride"] = stride
        if k != 3 or self.flag():
            args["k"] = k
        if self.flag():
            args["affine"] = self.flag()
        copies = self.pick([1, 1, 1, 2, 3])
        for _ in range(copies):
            h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
        entry: dict[str, Any] = {"res": args}
        if copies > 1:
            entry["repeat"] = copies
        return entry, (planes, h, w)

    def draw_mix(self, shape, depth):
        if shape[0] > 8:
            return self.draw_conv(shape, depth)
        self.use_block("mix")
        a, b = self.int_(1, 4), self.int_(1, 4)
        return {"mix": {"a": a, "b": b}}, (a + b + shape[0], *shape[1:])

    def draw_cbr(self, shape, depth):
        self.use_block("cbr")
        out = self.int_(1, MAX_CHANNELS)
        args: dict[str, Any] = {"out": out}
        if self.flag():
            args["k"] = self.int_(1, 4)
        return {"cbr": args}, (out, *shape[1:])

    def draw_gmax(self, shape, depth):
        self.use_block("gmax")
        return {"gmax": None}, (shape[0], 1, 1)

    def draw_repeat(self, shape, depth):
        """Copies of a shape-keeping layer, or of a 'same' conv whose width grows with the copy index `i`."""
        copies = self.int_(0, 3)
        c, h, w = shape
        if self.flag():
            base = self.int_(1, 8)
            kernel = self.int_(1, 4)
            entry = {"conv2d": {"out_channels": f"${base} + i", "kernel_size": kernel, "padding": "same"},
                     "repeat": copies}
            out = (base + copies - 1, h, w) if copies else shape
        else:
            inner, _ = self.pick([self.draw_bn, self.draw_act, self.draw_dropout])(shape, depth)
            entry = {**(inner if isinstance(inner, dict) else {inner: None}), "repeat": copies}
            out = shape
        if self.flag():
            entry["name"] = self.new_name()
        return entry, out


@st.composite
def architectures(draw) -> str:
    """The YAML text of a random valid spec: mostly a C x H x W input, sometimes an (L, F) sequence or a vector.

    >>> from hypothesis import find
    >>> "layers:" in find(architectures(), lambda text: True)
    True
    """
    width = draw(st.integers(1, 12))
    drawer = _Drawer(draw, width)
    form = draw(st.sampled_from(["image"] * 6 + ["sequence", "vector"]))
    if form == "image":
        shape: Shape = (draw(st.integers(1, 8)), draw(st.integers(8, 40)), draw(st.integers(8, 40)))
    elif form == "sequence":
        shape = (draw(st.integers(1, 8)), draw(st.integers(1, 16)))
    else:
        shape = (draw(st.integers(1, 32)),)
    entries, out = drawer.chain(shape, 0, draw(st.integers(1, 8)))
    if len(out) == 3 and draw(st.booleans()):  # a classifier head
        head = ["flatten", {"linear": {"out_features": draw(st.integers(1, 10))}, "name": "fc"}]
        if draw(st.booleans()):
            head.insert(0, {"global_avgpool2d": None, "name": "pool"})
        entries += head
    entries.append({"identity": None, "name": "out"})  # at least one layer even when every `if` skips its entry
    spec: dict[str, Any] = {"name": "generated", "input": list(shape), "params": {"width": width}}
    if drawer.blocks:
        spec["blocks"] = {name: BLOCKS[name] for name in drawer.blocks}
    spec["layers"] = entries
    return dump(spec)
