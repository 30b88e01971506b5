"""A tensor the model's Python code binds to a local name stays alive until its function returns or rebinds the
name (archviz/trace/frames.py): the memory walks hold it that long, as CPython does."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from archviz import inspect, load  # noqa: E402


class _Joined(nn.Module):
    """DenseNet's bn_function in small: the concatenation is read last by norm, but lives until conv has run."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 4, 1)

    def joined(self, x):
        both = torch.cat([x, x], 1)
        out = self.conv(self.norm(both))
        return out

    def forward(self, x):
        bottleneck = self.joined(x)
        result = self.head(torch.relu(bottleneck))
        return result


class _Rebound(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Conv2d(4, 4, 1) for _ in range(3))
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x):
        x = self.norm(x)
        for layer in self.layers:
            x = layer(x)
        first, second = x.chunk(2, dim=1)
        return first * second


@pytest.mark.parametrize("method", ["fx", "eager"])
def test_a_local_lives_until_its_function_returns(method, monkeypatch):
    if method == "eager":
        from archviz.trace import fx

        def untraceable(*args, **kwargs):
            raise fx.Untraceable("forced for the test")

        monkeypatch.setattr(fx, "trace_fx", untraceable)
    graph = load(_Joined(), input=(4, 8, 8))
    assert graph.origin.method == method
    held = dict(graph.origin.held_locals)
    assert held["cat"] == "conv"  # `both`, read last by norm, freed when joined() returns
    assert held["conv"] == "head"  # `bottleneck`, read last by relu, freed when forward returns
    assert "norm" not in held  # a temporary: freed at its last use


def test_a_rebound_name_frees_its_old_value_and_tuple_targets_bind_nothing():
    graph = load(_Rebound(), input=(4, 8, 8))
    held = dict(graph.origin.held_locals)
    assert held.get("norm") in (None, "layers.0")  # rebound by the loop's first call, its last use anyway
    assert not any(name.startswith("chunk") for name in held)


def test_the_inference_peak_equals_the_measured_one_where_a_local_outlives_its_last_use():
    """densenet121's bn_function holds its concatenation through conv1, and forward holds conv1's output through
    conv2: without the rule the prediction was 10.9% low at batch 8 (benchmarks/results/training_memory.md)."""
    from archviz.profile import measure_model

    report = inspect("torchvision:densenet121", input=(3, 64, 64), batch=2)
    measured = measure_model("torchvision:densenet121", input_shape=(3, 64, 64), batch=2, iterations=1,
                             per_layer=False)
    counters = 121 * 8  # batch norm's int64 step counters: buffers, but not floating-point ones
    assert report.totals.param_bytes + report.totals.peak_activation_bytes + counters == measured.peak_bytes
