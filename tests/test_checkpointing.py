"""Activation checkpointing: where a graph is cut (analysis/checkpointing.py), archviz's torch build running the
segments under torch.utils.checkpoint (torch_build.ArchvizModel.checkpoint), and the training step's memory
predicted with them (analysis/training.py) against the live-storage tracker's measurement of the same step."""

from __future__ import annotations

import json

import pytest

from archviz import inspect, load
from archviz.analysis.checkpointing import segments, single_tensor_cuts
from archviz.errors import ArchvizError

torch = pytest.importorskip("torch")
typer_testing = pytest.importorskip("typer.testing")


def test_a_chain_can_be_cut_before_every_layer_but_the_first():
    graph = load("lenet")
    assert single_tensor_cuts(graph) == list(range(1, len(graph.nodes)))


def test_a_residual_network_is_cut_only_between_blocks_and_never_before_an_in_place_layer():
    graph = load("resnet18", input=(3, 32, 32))
    names = [graph.nodes[step].name for step in single_tensor_cuts(graph)]
    assert "layer2.0.conv1" in names and "layer1.0.conv2" not in names  # inside a block two tensors cross
    in_place = {node.name for node in graph.nodes if node.attrs.get("inplace")}
    assert not in_place & set(names)  # the checkpoint keeps its input: a layer may not change it in place


def test_segments_are_as_equal_as_the_cuts_allow():
    graph = load("lenet")
    cut = segments(graph, 4)
    assert cut.starts == (3, 6, 9) and cut.count == 4
    assert [list(steps) for steps in cut.checkpointed] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert segments(graph, 100).count == len(graph.nodes)  # no more segments than layers
    with pytest.raises(ArchvizError, match="expected 2 or more"):
        segments(graph, 1)


@pytest.mark.parametrize("source, input_shape", [("lenet", None), ("resnet18", (3, 32, 32))])
def test_the_checkpointed_build_computes_the_same_outputs_and_gradients(source, input_shape):
    from archviz.torch_build import to_torch

    graph = load(source, input=input_shape)
    torch.manual_seed(0)
    model = to_torch(graph)
    x = torch.randn(2, *graph.input_shape)
    results = []
    for cut in (None, segments(graph, 3)):
        model.checkpoint(cut)
        model.zero_grad()
        output = model(x)
        output.square().sum().backward()
        results.append((output.detach(), [p.grad.clone() for p in model.parameters()]))
    (plain, plain_grads), (checkpointed, checkpointed_grads) = results
    assert torch.allclose(plain, checkpointed)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain_grads, checkpointed_grads))


@pytest.mark.parametrize("source, input_shape", [
    ("lenet", None), ("vgg11", (3, 32, 32)), ("resnet18", (3, 32, 32)),
    ("torchvision:mobilenet_v2", (3, 32, 32)), ("torchvision:densenet121", (3, 32, 32))])
@pytest.mark.parametrize("count", [2, 4])
@pytest.mark.parametrize("amp", [None, "bf16"])
def test_the_checkpointed_step_is_predicted_as_measured(source, input_shape, count, amp):
    """The recomputation of each segment in backward, what it keeps, what autocast caches in the forward pass:
    within 0.5% of the tracker's peak (a layer inside a segment saves nothing in the forward pass)."""
    from archviz.profile.run import measure_model

    batch = 2
    predicted = inspect(source, input=input_shape, batch=batch, optimizer="sgd", amp=amp,
                        checkpointing=count).totals.training_memory
    measured = measure_model(source, input_shape=input_shape, batch=batch, train=True, optimizer="sgd", amp=amp,
                             iterations=1, warmup=1, checkpointing=count)
    assert measured.checkpoint_starts == predicted.checkpoint_starts
    assert abs(predicted.peak_bytes - measured.peak_bytes) <= 0.005 * measured.peak_bytes


def test_checkpointing_keeps_less_for_backward_and_fits_a_larger_batch():
    plain = inspect("resnet18", batch=32, optimizer="sgd", fit_bytes=512 * 2**20).totals.training_memory
    checkpointed = inspect("resnet18", batch=32, optimizer="sgd", fit_bytes=512 * 2**20,
                           checkpointing=4).totals.training_memory
    assert checkpointed.saved_bytes < plain.saved_bytes / 4
    assert checkpointed.peak_bytes < plain.peak_bytes
    assert checkpointed.fits_batch > plain.fits_batch


def test_the_command_line_says_where_it_cut_and_refuses_what_cannot_be_checkpointed():
    from archviz.cli import app

    runner = typer_testing.CliRunner()
    shown = runner.invoke(app, ["inspect", "lenet", "--checkpointing", "3", "--no-crosscheck"])
    assert shown.exit_code == 0, shown.output
    assert "checkpointing" in shown.output and "tanh2, tanh3" in shown.output
    data = json.loads(runner.invoke(app, ["inspect", "lenet", "--checkpointing", "3", "--no-crosscheck", "-f",
                                          "json"]).output)
    assert data["totals"]["training_memory"]["checkpoint_starts"] == ["tanh2", "tanh3"]
    measured = runner.invoke(app, ["profile", "lenet", "--train", "--checkpointing", "3", "-n", "1", "--json"])
    assert json.loads(measured.output)["checkpoint_starts"] == ["tanh2", "tanh3"]
    refused = runner.invoke(app, ["profile", "lenet", "--checkpointing", "3"])
    assert refused.exit_code == 2 and "add --train" in refused.output
    assert runner.invoke(app, ["inspect", "lenet", "--checkpointing", "1"]).exit_code == 2
