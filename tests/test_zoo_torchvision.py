"""Every zoo model that names a torchvision builder equals that builder's model, checked against torch itself.

The oracle is torchvision's own module, built on the meta device (shapes only, no weights, no memory):
  * params = sum of its parameters' sizes; buffers = its batch-norm running means and variances;
  * MACs = FlopCounterMode's FLOPs / 2 (the convention stated in archviz/ops/base.py);
  * layer names = its state_dict keys without the tensor suffix, so a torchvision checkpoint's keys match.
Each figure is compared in total and per layer, at the spec's own input and at other sizes and class counts.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

import pytest

torch = pytest.importorskip("torch")

import archviz  # noqa: E402
from archviz.spec.zoo import load_zoo, zoo_index  # noqa: E402

# Builder arguments that make torchvision build the network the spec describes.
TORCHVISION_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},
}

# The torchvision part of the zoo; a spec that loses its `torchvision:` field fails here instead of going untested.
EXPECTED_TORCHVISION = {
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "googlenet", "inception_v3", "alexnet_owt",
}

# (zoo name, input C x H x W or None for the spec's own, num_classes or None for the spec's default)
OTHER_SIZES = [
    ("vgg16", (3, 32, 32), 10),  # CIFAR-sized: the trunk ends at 1x1 and the adaptive pool spreads it to 7x7
    ("vgg11_bn", (3, 64, 96), 10),
    ("resnet50", (3, 160, 160), 10),
    ("resnet18", (3, 64, 64), None),
    ("resnet34", (3, 200, 300), 37),
    ("resnet152", (3, 97, 131), None),  # odd sizes: every stride-2 layer rounds
    ("googlenet", (3, 128, 128), None),
    ("googlenet", (3, 97, 131), 10),  # ceil_mode pools round up here
    ("inception_v3", (3, 320, 320), None),
    ("inception_v3", (3, 75, 75), 5),  # the smallest input torchvision's Inception v3 takes
    ("alexnet_owt", (3, 256, 256), None),
    ("alexnet_owt", (3, 63, 63), 10),  # the features end at 1x1; the adaptive pool spreads it to 6x6
]


@lru_cache(maxsize=1)
def torchvision_zoo() -> dict[str, str]:
    """Zoo name -> torchvision builder name, for every entry that has one."""
    return {name: spec.torchvision for name in zoo_index() if (spec := load_zoo(name)).torchvision}


CASES = [(name, None, None) for name in sorted(torchvision_zoo())] + OTHER_SIZES


def case_id(case) -> str:
    name, shape, classes = case
    size = "default" if shape is None else "x".join(map(str, shape))
    return f"{name}-{size}" + ("" if classes is None else f"-{classes}cls")


@lru_cache(maxsize=None)
def archviz_report(name: str, shape, classes):
    overrides = None if classes is None else {"num_classes": classes}
    return archviz.inspect(name, input=shape, overrides=overrides)


@lru_cache(maxsize=None)
def torchvision_model(name: str, classes: int):
    import torchvision

    builder = torchvision_zoo()[name]
    with torch.device("meta"):
        model = getattr(torchvision.models, builder)(num_classes=classes, **TORCHVISION_KWARGS.get(builder, {}))
    return model.eval()


def torch_model_for(case):
    name, shape, classes = case
    report = archviz_report(*case)
    default_classes = load_zoo(name).params["num_classes"]
    return torchvision_model(name, default_classes if classes is None else classes), report


def per_layer(named_tensors) -> dict[str, int]:
    """Element counts per layer name: 'layer1.0.conv1.weight' and '.bias' both count to 'layer1.0.conv1'."""
    counts: Counter = Counter()
    for key, tensor in named_tensors:
        counts[key.rsplit(".", 1)[0]] += tensor.numel()
    return dict(counts)


def running_stats(model):
    """Batch-norm running means and variances; num_batches_tracked is not counted (see archviz/ops/norm.py)."""
    return [(k, b) for k, b in model.named_buffers() if k.endswith(("running_mean", "running_var"))]


def test_the_torchvision_zoo_is_complete():
    assert EXPECTED_TORCHVISION <= set(torchvision_zoo())


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_params_and_buffers_equal_torchvision(case):
    model, report = torch_model_for(case)
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert report.totals.buffers == sum(b.numel() for _, b in running_stats(model))
    ours = {s.name: s.params for s in report.layers if s.params}
    assert ours == per_layer(model.named_parameters())
    ours_buffers = {s.name: s.buffers for s in report.layers if s.buffers}
    assert ours_buffers == per_layer(running_stats(model))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_layer_names_equal_torchvision_state_dict(case):
    model, report = torch_model_for(case)
    expected = {k.rsplit(".", 1)[0] for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    ours = {s.name for s in report.layers if s.params > 0 or s.buffers > 0}
    assert ours == expected, f"only in archviz: {sorted(ours - expected)}; only in torchvision: {sorted(expected - ours)}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_macs_equal_flop_counter(case):
    from torch.utils.flop_counter import FlopCounterMode

    model, report = torch_model_for(case)
    with torch.device("meta"):
        image = torch.empty(1, *report.input)  # (N, C, H, W), one image
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(image)
    assert report.totals.macs == counter.get_total_flops() // 2

    # Per layer: FlopCounterMode files each count under the module path, prefixed with the model's class name.
    modules = dict(model.named_modules())
    theirs = {}
    for path, counts in counter.get_flop_counts().items():
        name = path.partition(".")[2]
        if name in modules and not any(True for _ in modules[name].children()):
            theirs[name] = sum(counts.values()) // 2
    ours = {s.name: s.macs for s in report.layers if s.macs}
    assert ours == theirs


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_torchvision_state_dict_loads_strictly(case):
    """Same keys and the same shape under every key: a torchvision checkpoint loads into archviz's module."""
    from archviz.torch_build import to_torch

    model, report = torch_model_for(case)
    ours = to_torch(report.graph, device="meta")
    ours.load_state_dict(model.state_dict(), strict=True, assign=True)
