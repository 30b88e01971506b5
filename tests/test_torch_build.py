"""to_torch(): the graph built in torch has the predicted shapes and parameter counts, and torchvision's names."""

from __future__ import annotations

from pathlib import Path

import copy
import pickle
import subprocess
import sys

import pytest

import archviz
from archviz.errors import ArchvizError
from archviz.spec.zoo import zoo_names

torch = pytest.importorskip("torch")
from archviz.torch_build import AddJoin, ConcatJoin, to_torch, weight_elements  # noqa: E402

BRANCHY = (Path(__file__).parent / "data" / "branchy.yaml").read_text()

SEQUENCE = (Path(__file__).parent / "data" / "sequence.yaml").read_text()

# torchvision builders whose defaults add layers the zoo spec leaves out (the specs say so in their comments)
TORCHVISION_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},
}


def torchvision_model(name: str, device: str):
    torchvision = pytest.importorskip("torchvision")
    with torch.device(device):
        return torchvision.models.get_model(name, weights=None, **TORCHVISION_KWARGS.get(name, {}))


def run_with_hooks(model, graph, batch: int = 2):
    """Forward a random CPU batch; every layer's output shape (batch dropped) by layer name, and the output."""
    shapes = {}
    for node in graph.nodes:
        def record(module, inputs, output, name=node.name):
            assert output.shape[0] == batch
            shapes[name] = tuple(output.shape[1:])

        model.get_submodule(node.name).register_forward_hook(record)
    with torch.no_grad():
        out = model.eval()(torch.randn(batch, *graph.input_shape))
    return shapes, out


@pytest.fixture(params=["lenet", "branchy", "sequence"])
def graph(request, write_spec):
    specs = {"branchy": BRANCHY, "sequence": SEQUENCE}
    if request.param in specs:
        return archviz.load(write_spec(specs[request.param]))
    return archviz.load(request.param)


def test_every_layer_has_its_predicted_shape(graph):
    shapes, out = run_with_hooks(to_torch(graph), graph)
    assert shapes == {node.name: node.out_shape for node in graph.nodes}
    assert tuple(out.shape[1:]) == graph.node(graph.output).out_shape


def test_parameter_and_buffer_counts_match_the_report(graph):
    model = to_torch(graph)
    report = archviz.analyze(graph)
    assert sum(p.numel() for p in model.parameters()) == report.totals.params
    running = sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    assert running == report.totals.buffers
    for stats in report.layers:
        assert sum(p.numel() for p in model.get_submodule(stats.name).parameters()) == stats.params, stats.name


def test_layers_live_at_their_paths(graph):
    model = to_torch(graph, device="meta")
    expected = {f"{node.name}.{key}" for node in graph.nodes for key in model.get_submodule(node.name).state_dict()}
    assert set(model.state_dict()) == expected


def test_nested_paths_make_nested_modules(write_spec):
    graph = archviz.load(write_spec(BRANCHY))
    model = to_torch(graph, device="meta")
    assert model.down[0] is model.get_submodule("down.0")
    assert isinstance(model.residual, AddJoin) and isinstance(model.mix, ConcatJoin)
    assert model.get_submodule("grouped").groups == 4
    assert "down.1.running_mean" in model.state_dict()


def test_meta_device_allocates_no_storage():
    graph = archviz.load("vgg16")
    model = to_torch(graph, device="meta")
    tensors = [*model.parameters(), *model.buffers()]
    assert tensors and all(t.is_meta for t in tensors)
    assert sum(t.numel() for t in tensors) == weight_elements(graph) + sum(
        1 for name, _ in model.named_buffers() if name.endswith("num_batches_tracked")
    )


def test_refuses_weights_over_the_memory_limit_before_allocating(write_spec):
    graph = archviz.load("lenet")
    with pytest.raises(ArchvizError, match=f"{weight_elements(graph) * 4:,} bytes"):
        to_torch(graph, memory_limit=1000)
    assert to_torch(graph, device="meta", memory_limit=1000) is not None  # meta allocates nothing


def test_refuses_a_model_larger_than_physical_memory(write_spec):
    huge = write_spec("""
        name: huge
        input: [1000000]
        layers:
          - linear: {out_features: 1000000}
    """)
    graph = archviz.load(huge)
    with pytest.raises(ArchvizError, match="4,000,004,000,000 bytes"):
        to_torch(graph)


def test_a_layer_named_like_a_module_attribute_is_refused(write_spec):
    graph = archviz.load(write_spec("""
        name: clash
        input: [4]
        layers:
          - linear: {out_features: 2}
            name: training
    """))
    with pytest.raises(ArchvizError, match="'training' clashes"):
        to_torch(graph, device="meta")


def test_joins():
    a, b = torch.ones(1, 2, 3, 3), torch.full((1, 3, 3, 3), 2.0)
    assert torch.equal(AddJoin()(a, a, a), 3 * a)
    assert torch.equal(ConcatJoin(1)(a, b), torch.cat([a, b], 1))


def test_model_pickles_and_copies(graph):
    model = to_torch(graph)
    x = torch.randn(1, *graph.input_shape)
    clone = pickle.loads(pickle.dumps(model))
    with torch.no_grad():
        assert torch.equal(clone.eval()(x), model.eval()(x))
        assert torch.equal(copy.deepcopy(model)(x), model(x))


def test_importing_torch_build_does_not_import_torch():
    code = "import sys, archviz, archviz.torch_build, archviz.crosscheck; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


ZOO_TORCHVISION = [name for name in zoo_names() if archviz.load_spec(name).torchvision]


@pytest.mark.parametrize("name", ZOO_TORCHVISION)
def test_torchvision_state_dict_loads_strictly(name):
    graph = archviz.load(name)
    reference = torchvision_model(graph.torchvision, "meta")
    model = to_torch(graph, device="meta")
    model.load_state_dict(reference.state_dict(), strict=True, assign=True)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("name", [n for n in ("resnet18", "googlenet") if n in ZOO_TORCHVISION])
def test_forward_equals_torchvision_with_the_same_weights(name):
    graph = archviz.load(name)
    reference = torchvision_model(graph.torchvision, "cpu").eval()
    model = to_torch(graph).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
