"""timm:NAME as a source: the default input from timm's pretrained_cfg, the errors a user can cause, --kwargs, and a
fixed sample of timm models across families held against the module itself (params: sum of p.numel(); MACs:
FlopCounterMode's FLOPs / 2 on the meta device). fuzz/sweep_timm.py runs the same comparison over timm's whole
registry; this file keeps the sample's known gaps as strict xfails, so fixing one makes its test fail until the
xfail is removed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache

import pytest

timm = pytest.importorskip("timm")
torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

import archviz  # noqa: E402
from archviz.cli import app  # noqa: E402
from archviz.errors import ArchvizError, MissingDependencyError, UnknownNameError, UnsupportedOpError  # noqa: E402

MACS_TARGET = 0.005  # issue 17: archviz's MACs within 0.5% of FlopCounterMode's FLOPs / 2
runner = CliRunner()


def module_of(name: str, **kwargs):
    """The oracle: timm's own create_model on the meta device, without archviz's loader, in eval mode."""
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False, **kwargs).eval()


def module_params(name: str, **kwargs) -> int:
    return sum(p.numel() for p in module_of(name, **kwargs).parameters())


def flop_counter_macs(model, shape) -> int:
    """FlopCounterMode's FLOPs / 2 at batch 1 on meta. Autograd stays on: under no_grad its module tracker fails on
    a module given a bare nn.Parameter (CaiT's cls_token); autograd changes no FLOP count."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(torch.empty((1, *shape), device="meta"))
    return counter.get_total_flops() // 2


# --- the source ------------------------------------------------------------------------------------------------------

def test_default_input_is_the_pretrained_cfg_input_size():
    graph = archviz.load("timm:resnet18")
    assert graph.input_shape == tuple(timm.models.get_pretrained_cfg("resnet18").input_size) == (3, 224, 224)
    assert graph.origin.source == "timm:resnet18"
    assert "timm.create_model('resnet18', pretrained=False)" in graph.description


def test_params_equal_the_modules():
    report = archviz.inspect("timm:resnet18")
    assert report.totals.params == module_params("resnet18")
    assert report.totals.macs == flop_counter_macs(module_of("resnet18"), (3, 224, 224))


def test_a_tagged_name_uses_its_own_pretrained_cfg():
    cfg = timm.models.get_pretrained_cfg("vit_tiny_patch16_384.augreg_in21k_ft_in1k")
    assert archviz.load("timm:vit_tiny_patch16_384.augreg_in21k_ft_in1k").input_shape == tuple(cfg.input_size)
    assert cfg.input_size == (3, 384, 384)


def test_img_size_and_in_chans_kwargs_set_the_default_input():
    graph = archviz.load("timm:vit_tiny_patch16_224", kwargs={"img_size": 64, "in_chans": 1})
    assert graph.input_shape == (1, 64, 64)


def test_kwargs_reach_create_model():
    default = archviz.inspect("timm:resnet18", input=(3, 64, 64)).totals.params
    ten = archviz.inspect("timm:resnet18", input=(3, 64, 64), kwargs={"num_classes": 10}).totals.params
    features = 512  # resnet18's fc.in_features
    assert default - ten == (features * 1000 + 1000) - (features * 10 + 10)
    assert ten == module_params("resnet18", num_classes=10)


def test_an_unknown_name_is_one_line_with_the_closest_names():
    result = runner.invoke(app, ["inspect", "timm:resnet81", "--no-crosscheck"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "timm has no model 'resnet81'" in lines[0] and "did you mean: resnet18" in lines[0]


def test_an_unknown_tag_names_the_models_tags():
    with pytest.raises(UnknownNameError, match=r"no pretrained tag 'bogus'.*its tags: a1_in1k"):
        archviz.load("timm:resnet18.bogus")


@pytest.mark.parametrize("key", ["pretrained", "checkpoint_path", "pretrained_cfg_overlay"])
def test_kwargs_that_load_weights_are_refused(key):
    result = runner.invoke(app, ["inspect", "timm:resnet18", "--no-crosscheck", "--kwargs", json.dumps({key: True})])
    assert result.exit_code == 2
    assert f"--kwargs {key}: archviz builds timm models without weights" in result.output


def test_without_timm_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "timm", None)  # `import timm` raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'archviz\[timm\]'"):
        archviz.load("timm:resnet18")
    result = runner.invoke(app, ["inspect", "timm:resnet18", "--no-crosscheck"])
    assert result.exit_code == 2 and "archviz[timm]" in result.output and "Traceback" not in result.output


def test_nothing_is_downloaded(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert archviz.inspect("timm:mobilenetv3_small_100", input=(3, 64, 64)).totals.params == module_params(
        "mobilenetv3_small_100")


@pytest.mark.parametrize("command, expected", [
    (["inspect", "timm:resnet18", "--input", "3x64x64", "--no-crosscheck", "--format", "csv"], "layer1.0.conv1"),
    (["diff", "timm:resnet18", "torchvision:resnet18", "--input", "3x64x64"], "11,689,512"),  # the same network
    (["explain", "timm:resnet18", "layer1.0.conv1", "--input", "3x64x64"], "36,864"),  # 64 x 64 x 3 x 3 weights
    (["diagram", "timm:resnet18", "--input", "3x64x64", "--output", "net.dot"], ""),
], ids=["inspect", "diff", "explain", "diagram"])
def test_commands_take_a_timm_model(command, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert expected in result.output
    if command[0] == "diagram":
        assert 'digraph "timm:resnet18"' in (tmp_path / "net.dot").read_text()


# --- a fixed sample across timm's families ------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """A timm model at a small input (side x side) where it allows one; the known gaps, each naming its construct."""

    name: str
    side: int = 64
    kwargs: dict = field(default_factory=dict)
    fails: str = ""  # archviz.inspect raises (the reason names the construct)
    raises: type = UnsupportedOpError  # ... this error
    params_gap: str = ""  # analysed, but the params total is not the module's
    macs_gap: str = ""  # analysed, but the MACs are off by more than MACS_TARGET

    @property
    def shape(self) -> tuple[int, int, int]:
        return (3, self.side, self.side)


def small(name: str, side: int = 64, **notes) -> Case:
    """A fixed-size model (ViT, Swin, ...) built for a smaller image with img_size."""
    return Case(name, side, {"img_size": side}, **notes)


SAMPLE = (
    # CNNs
    Case("resnet18"), Case("efficientnet_b0"), Case("mobilenetv3_small_100"), Case("mobilenetv4_conv_small"),
    Case("convnext_atto"), Case("regnetx_002"), Case("densenet121"), Case("ghostnet_100"), Case("dla34"),
    Case("repvgg_a0"), Case("hrnet_w18_small"), Case("inception_v3", 75), Case("resnest14d"), Case("focalnet_tiny_srf"),
    Case("tf_efficientnet_lite0"),  # Conv2dSame: 'SAME' padding from the input size, so fx fails (eager trace)
    Case("nf_resnet26"),  # ScaledStdConv2d: F.conv2d on a weight standardised in forward (MACs measured)
    # hybrids
    Case("efficientformer_l1", 224), small("levit_128s"), Case("poolformer_s12"),
    small("coatnet_nano_rw_224"), Case("mobilevit_xxs"), Case("mobilevitv2_050"), Case("efficientvit_b0"),
    # transformers
    small("vit_tiny_patch16_224"), small("deit_tiny_patch16_224"), small("swin_tiny_patch4_window7_224", 112),
    Case("pvt_v2_b0"), small("mixer_s16_224"), small("cait_xxs24_224"), small("xcit_nano_12_p16_224"),
    Case("crossvit_tiny_240", 240),
    Case("maxvit_tiny_tf_224", 224),  # window and grid attention: the batch folded into the windows
    Case("tiny_vit_5m_224", 224),  # attention biases cached from a parameter on the first pass (eager trace)
    small("eva02_tiny_patch14_224", 56),  # rotary embedding; q/k/v by F.linear with a concatenated bias
    Case("qwen3_vit_306m"),  # rotary attention with no class token slices q[:, :, :0]: an empty tensor
)


def _marked(case: Case, gap: str):
    reason = case.fails and f"not analysed: {case.fails}" or gap
    raises = case.raises if case.fails else AssertionError
    marks = [pytest.mark.xfail(strict=True, raises=raises, reason=reason)] if reason else []
    return pytest.param(case, id=case.name, marks=marks)


def case_named(name: str) -> Case:
    return next(case for case in SAMPLE if case.name == name)


@lru_cache(maxsize=None)
def inspected(name: str):
    """One trace per model, shared by the three tests of the sample."""
    case = case_named(name)
    return archviz.inspect(f"timm:{name}", input=case.shape, kwargs=case.kwargs)


@lru_cache(maxsize=None)
def sample_module(name: str):
    return module_of(name, **case_named(name).kwargs)


@pytest.mark.parametrize("case", [_marked(case, "") for case in SAMPLE])
def test_sample_is_analysed(case):
    assert inspected(case.name).graph.input_shape == case.shape


@pytest.mark.parametrize("case", [_marked(case, case.params_gap) for case in SAMPLE])
def test_sample_params_equal_the_modules(case):
    assert inspected(case.name).totals.params == sum(p.numel() for p in sample_module(case.name).parameters())


@pytest.mark.parametrize("case", [_marked(case, case.macs_gap) for case in SAMPLE])
def test_sample_macs_within_target_of_flop_counter(case):
    ours = inspected(case.name).totals.macs
    theirs = flop_counter_macs(sample_module(case.name), case.shape)
    assert abs(ours - theirs) <= MACS_TARGET * theirs, f"archviz {ours:,} vs FlopCounterMode/2 {theirs:,}"


def test_sample_spans_families():
    from timm.models._registry import _model_to_module

    families = {_model_to_module[case.name] for case in SAMPLE}
    assert len(SAMPLE) >= 25 and len(families) >= 20
