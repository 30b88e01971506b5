"""`archviz train --init` and `--freeze` on tiny runs (the bundled digits, one thread): a run started from another
starts at its accuracy; a new head where the classes differ; frozen layers keep their weights; what does not fit is
one line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from archviz.cli import app
from archviz.errors import ArchvizError
from archviz.train.loop import train
from test_train_data import write_folder

torch = pytest.importorskip("torch")
runner = CliRunner()
TINY = dict(dataset="digits", batch_size=64, threads=1, progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "lenet"
    return train("lenet", output=folder, epochs=2, **TINY)


def test_init_from_a_run_starts_at_its_accuracy(trained, tmp_path):
    # a learning rate too small to move a weight: the new run's best.pt is the old run's weights
    again = train("lenet", output=tmp_path / "again", epochs=1, lr=1e-12, augment=False, init=str(trained.folder),
                  **TINY)
    assert again.test_accuracy == trained.test_accuracy
    assert json.loads((tmp_path / "again" / "run.json").read_text())["settings"]["init"] == str(trained.folder)
    fresh = train("lenet", output=tmp_path / "fresh", epochs=1, lr=1e-12, augment=False, **TINY)
    assert fresh.test_accuracy < 0.5 < trained.test_accuracy


def test_init_from_a_state_dict_and_a_new_head_for_other_classes(trained, tmp_path):
    weights = tmp_path / "lenet.pth"
    torch.save(torch.load(trained.folder / "best.pt", weights_only=True)["model"], weights)
    folder = write_folder(tmp_path / "shapes", classes=("a", "b", "c"))
    result = runner.invoke(app, ["train", "lenet", "--dataset", f"folder:{folder}", "--init", str(weights),
                                 "--freeze", "backbone", "--epochs", "1", "--threads", "1", "--batch-size", "8",
                                 "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "init: a new head (other classes): fc3.weight, fc3.bias from the seed" in result.output
    after = torch.load(tmp_path / "r" / "best.pt", weights_only=True)["model"]
    before = torch.load(weights, weights_only=True)
    assert torch.equal(after["conv1.weight"], before["conv1.weight"])  # frozen: as loaded
    assert after["fc3.weight"].shape[0] == 3


def test_freeze_keeps_the_named_layers(trained, tmp_path):
    result = train("lenet", output=tmp_path / "r", epochs=1, init=str(trained.folder), freeze="conv1,fc1", **TINY)
    after = torch.load(result.folder / "best.pt", weights_only=True)["model"]
    before = torch.load(trained.folder / "best.pt", weights_only=True)["model"]
    assert torch.equal(after["conv1.weight"], before["conv1.weight"]) and torch.equal(after["fc1.bias"],
                                                                                      before["fc1.bias"])
    assert not torch.equal(after["fc3.weight"], before["fc3.weight"])


@pytest.mark.parametrize("options, message", [
    (dict(init="nowhere.pth"), "no weights file nowhere.pth"),
    (dict(freeze="conv9"), "--freeze 'conv9': no layer of the model has that path"),
    (dict(init="torchvision"), "--init torchvision: lenet is not built like a torchvision network"),
])
def test_init_and_freeze_errors(options, message, tmp_path):
    with pytest.raises(ArchvizError, match=message):
        train("lenet", output=tmp_path / "r", epochs=1, **TINY, **options)


def test_init_that_does_not_fit(trained, tmp_path):
    with pytest.raises(ArchvizError, match=r"these weights do not fit the model: 4 misshapen \(fc1.weight, "):
        train("mlp", output=tmp_path / "r", epochs=1, init=str(trained.folder), **TINY)


def test_init_torchvision_reads_torch_hubs_cache_and_never_downloads(tmp_path, monkeypatch):
    import archviz
    from archviz.train.init import weights_path

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    graph = archviz.load("resnet18")
    with pytest.raises(ArchvizError, match=r"checkpoints/resnet18-f37072fd.pth is not on this machine; archviz never "
                                           r"downloads: fetch https://download.pytorch.org/models/resnet18-f37072fd"):
        weights_path("torchvision", graph)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"")
    assert weights_path("torchvision", graph) == tmp_path / "checkpoints" / "resnet18-f37072fd.pth"
