"""A state dict (.pth/.pt) holds weights, no graph: archviz names the zoo or torchvision model whose tensors it holds
exactly and analyses that model, or says which models come closest."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

import archviz  # noqa: E402
from archviz.cli import app  # noqa: E402
from archviz.errors import ArchvizError  # noqa: E402
from archviz.torch_build import to_torch  # noqa: E402
from archviz.trace import state_dict  # noqa: E402


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def zoo_state_dict(name: str, *, device: str = "meta") -> dict:
    """A zoo model's state dict; on the meta device (shapes only, a file of a few KB) unless asked for weights."""
    return to_torch(archviz.load(name), device=device).state_dict()


@pytest.fixture
def only_the_zoo(monkeypatch):
    """No torchvision candidates: building signatures for all of torchvision takes a minute, once per install."""
    monkeypatch.setattr(state_dict, "torchvision_signatures", lambda: iter(()))


def test_a_zoo_state_dict_with_weights_is_named_and_analysed(tmp_path, only_the_zoo):
    path = tmp_path / "lenet.pth"
    torch.save(zoo_state_dict("lenet", device="cpu"), path)
    result = run("inspect", str(path), "--no-crosscheck")
    assert result.exit_code == 0, result.output
    assert f"{path}: a state dict (no graph); its 10 tensors match lenet exactly: analysing lenet" in result.stderr
    assert "61,706" in result.stdout


def test_resnet18(tmp_path, only_the_zoo):
    path = tmp_path / "weights.pth"
    torch.save(zoo_state_dict("resnet18"), path)
    result = run("inspect", str(path), "--no-crosscheck", "--format", "json")
    assert result.exit_code == 0, result.output
    assert "its 122 tensors match resnet18 exactly: analysing resnet18" in result.stderr
    assert '"model": "resnet18"' in result.stdout  # stdout is the JSON alone
    graph = archviz.load(path)
    assert graph.name == "resnet18" and "a state dict (no graph)" in graph.description


@pytest.mark.parametrize("wrap", [
    lambda sd: {"state_dict": sd, "epoch": 3},
    lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
    lambda sd: {f"module.{k}": v for k, v in sd.items()},  # saved from nn.DataParallel
])
def test_checkpoints_are_unwrapped(tmp_path, only_the_zoo, wrap):
    path = tmp_path / "checkpoint.pt"
    torch.save(wrap(zoo_state_dict("lenet")), path)
    assert state_dict.identify(path).source == "lenet"


def test_a_torchvision_state_dict(tmp_path, monkeypatch):
    def few():  # a few torchvision candidates, built the way the full search builds them
        from archviz.trace.load import build_meta, parse_source

        for name in ("squeezenet1_0", "mobilenet_v2"):
            model = build_meta(parse_source(f"torchvision:{name}"))
            yield f"torchvision:{name}", {k: tuple(v.shape) for k, v in model.state_dict().items()}

    monkeypatch.setattr(state_dict, "torchvision_signatures", few)
    import torchvision

    with torch.device("meta"):
        model = torchvision.models.mobilenet_v2()
    path = tmp_path / "mobilenet.pth"
    torch.save(model.state_dict(), path)
    match = state_dict.identify(path)
    assert match.source == "torchvision:mobilenet_v2"
    assert archviz.inspect(path).totals.params == sum(p.numel() for p in model.parameters())


def test_no_match_names_the_closest(tmp_path, only_the_zoo):
    weights = zoo_state_dict("resnet18")
    weights["fc.weight"] = torch.empty(10, 512, device="meta")  # retrained for 10 classes
    weights["fc.bias"] = torch.empty(10, device="meta")
    path = tmp_path / "cifar.pth"
    torch.save(weights, path)
    result = run("inspect", str(path))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "no zoo or torchvision model has exactly these names and shapes; closest: resnet18 (120 of its 122" \
        in result.stderr


@pytest.mark.parametrize("content, message", [
    (b"\x00\x01 not a torch file", "bad.pth: cannot load it (not a file of tensors"),
    ([1, 2, 3], "not a state dict (it holds a list"),
    ({"weight": torch.zeros(2), "epoch": 3}, "not a state dict (it holds a mapping that holds other things too"),
])
def test_files_that_are_no_state_dict(tmp_path, content, message):
    path = tmp_path / "bad.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    result = run("inspect", str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"archviz: error: {path}: ") and result.stderr.count("\n") == 1
    assert message in result.stderr


def test_a_missing_file():
    with pytest.raises(ArchvizError, match="nothing.pth: no such file"):
        state_dict.read_signature(Path("nothing.pth"))
