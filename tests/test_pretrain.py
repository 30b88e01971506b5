"""archviz pretrain and archviz probe: each task's short run lowers its pretext loss, runs resume exactly, the
backbone is what the probe, filters and activations read, and bad input is one clear error."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from archviz.cli import app
from archviz.errors import ArchvizError
from archviz.train.run import TrainingInterrupted
from test_train_data import write_mnist

torch = pytest.importorskip("torch")

from archviz.pretrain.loop import pretrain  # noqa: E402

FAST = dict(batch_size=16, threads=1, progress=False)  # 180 training images of 28x28: 12 batches an epoch
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    return write_mnist(tmp_path_factory.mktemp("mnist") / "mnist", per_class=20)


@pytest.fixture(scope="module")
def rotation_run(mnist, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pre") / "rotation"
    pretrain("lenet", task="rotation", dataset=f"mnist:{mnist}", epochs=3, output=folder, **FAST)
    return folder


@pytest.mark.parametrize("task", ["rotation", "jigsaw", "context", "simclr", "instdisc"])
def test_each_task_lowers_its_pretext_loss(mnist, tmp_path, task):
    result = pretrain("lenet", task=task, dataset=f"mnist:{mnist}", epochs=4, lr=0.003, output=tmp_path / task,
                      **FAST)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0], losses
    record = json.loads((tmp_path / task / "run.json").read_text())
    assert record["status"] == "finished" and record["pretext"]["task"] == task
    assert 0 <= result.test_accuracy <= 1
    state = torch.load(tmp_path / task / "best.pt", weights_only=True)
    assert state["pretext"]["task"] == task
    assert {name.split(".")[0] for name in state["model"]} == {"backbone", "head"}


def test_the_backbone_leaves_the_classifier_out(rotation_run):
    from archviz.inside.trained import load_trained

    trained = load_trained(rotation_run)
    assert trained.graph.output == "tanh3" and "fc3" not in trained.graph.by_name
    assert trained.classes == () and len(trained.dataset_classes) == 10
    state = torch.load(rotation_run / "best.pt", weights_only=True)["model"]
    assert torch.equal(trained.net.get_submodule("conv1").weight, state["backbone.conv1.weight"])


@pytest.mark.parametrize("task", ["rotation", "instdisc"])
def test_resume_ends_with_the_same_weights(mnist, tmp_path, task):
    options = dict(task=task, dataset=f"mnist:{mnist}", epochs=2, **FAST)
    pretrain("lenet", output=tmp_path / "whole", **options)
    with pytest.raises(TrainingInterrupted):
        pretrain("lenet", output=tmp_path / "cut", stop=lambda epoch, batch: (epoch, batch) == (2, 5), **options)
    pretrain("lenet", output=tmp_path / "cut", resume=True, **options)
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    if task == "instdisc":
        assert torch.equal(a["pretext"]["memory_bank"]["features"], b["pretext"]["memory_bank"]["features"])


def test_resume_refuses_another_task(mnist, tmp_path):
    options = dict(dataset=f"mnist:{mnist}", epochs=2, **FAST)
    with pytest.raises(TrainingInterrupted):
        pretrain("lenet", task="rotation", output=tmp_path / "r", stop=lambda e, b: True, **options)
    with pytest.raises(ArchvizError, match="is a run of the rotation task, not of the jigsaw task"):
        pretrain("lenet", task="jigsaw", output=tmp_path / "r", resume=True, **options)


def test_probe_table_and_json(rotation_run):
    result = invoke("probe", rotation_run, "--kind", "knn", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert "archviz: training the supervised baseline: archviz train lenet" in result.stderr
    # every phase shows progress, on stderr: the baseline's epochs, then each backbone's features and probes
    assert "1 CPU thread;" in result.stderr and "epoch 3/3" in result.stderr
    for name in ("pretext", "random", "supervised"):
        assert f"features of the {name} backbone (" in result.stderr and f"knn probes of the {name} backbone (3 " \
            in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("knn probe of the rotation backbone on mnist:")
    assert lines[2].split() == ["block", "features", "pretext", "random", "init", "supervised"]
    assert [line.split()[0] for line in lines[3:6]] == ["tanh1", "pool2", "tanh3"]
    assert [line.split()[1] for line in lines[3:6]] == ["486", "400", "120"]  # 6x9x9 pooled, 16x5x5, 120
    saved = json.loads((rotation_run / "probe-knn.json").read_text())
    assert [block["block"] for block in saved["blocks"]] == ["tanh1", "pool2", "tanh3"]
    for block in saved["blocks"]:
        assert set(block["accuracy"]) == {"pretext", "random", "supervised"}
        assert all(0.05 <= a <= 1 for values in block["accuracy"].values() for a in values)
    supervised = json.loads((rotation_run / "supervised" / "run.json").read_text())
    assert supervised["settings"]["epochs"] == 3  # the pretext run's budget


def test_linear_probe_separates_easy_features():
    """On features that are the labels plus noise, the logistic regression scores near 1 and the kNN too."""
    import numpy as np

    from archviz.pretrain.probe import _knn, _linear

    rng = np.random.default_rng(0)
    labels = {split: rng.integers(0, 3, size) for split, size in (("train", 90), ("val", 30), ("test", 30))}
    features = {split: np.eye(3)[y] * 5 + rng.normal(0, 0.5, (len(y), 3)) for split, y in labels.items()}
    assert _linear(features, labels) > 0.95 and _knn(features, labels) > 0.95
    shuffled = {split: rng.permutation(f) for split, f in features.items()}
    assert _linear(shuffled, labels) < 0.7


def test_probe_pools_maps_to_the_budget():
    from archviz.pretrain.probe import FEATURE_BUDGET, _pooled

    assert tuple(_pooled(torch.ones(2, 16, 10, 10)).shape) == (2, 400)
    assert tuple(_pooled(torch.ones(2, 512, 7, 7)).shape) == (2, 512)
    assert tuple(_pooled(torch.ones(2, 120)).shape) == (2, 120)
    assert _pooled(torch.ones(1, 6, 28, 28)).shape[1] <= FEATURE_BUDGET


def test_probe_of_a_supervised_run_is_refused(mnist, tmp_path):
    from archviz.train.loop import train

    train("lenet", dataset=f"mnist:{mnist}", epochs=1, output=tmp_path / "sup", **FAST)
    result = invoke("probe", tmp_path / "sup")
    assert result.exit_code == 2
    assert "is a run of archviz train, not of archviz pretrain" in result.output


def test_probe_of_a_folder_without_runs(tmp_path):
    result = invoke("probe", tmp_path)
    assert result.exit_code == 2 and "not a run folder of archviz pretrain" in result.output


def test_pretrain_cli_and_what_reads_its_backbone(rotation_run, tmp_path):
    result = invoke("filters", rotation_run, "-o", tmp_path / "f.png")
    assert result.exit_code == 0, result.output
    result = invoke("activations", rotation_run, "--sample", 0, "-o", tmp_path / "a.png")
    assert result.exit_code == 0 and "the backbone's features (no classifier)" in result.output
    result = invoke("cam", rotation_run, "--sample", 0)
    assert result.exit_code == 2 and "backbone without a classifier" in result.output


def test_pretrain_cli_errors(mnist, tmp_path):
    result = invoke("pretrain", "lenet", "--task", "puzzle", "-o", tmp_path / "x")
    assert result.exit_code == 2 and "puzzle" in result.output
    result = invoke("pretrain", "mlp", "--task", "rotation", "--dataset", f"mnist:{mnist}", "-o", tmp_path / "m")
    assert result.exit_code == 2 and "no layer with a spatial output" in result.output
    assert "Traceback" not in result.output


def test_pretrain_cli_with_seeds(mnist, tmp_path):
    result = invoke("pretrain", "lenet", "--task", "rotation", "--dataset", f"mnist:{mnist}", "--epochs", 1,
                    "--seeds", 2, "--threads", 1, "-o", tmp_path / "two")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "two" / "seed-0" / "best.pt").is_file() and (tmp_path / "two" / "seed-1" / "best.pt").is_file()
    a = torch.load(tmp_path / "two" / "seed-0" / "best.pt", weights_only=True)["model"]["backbone.conv1.weight"]
    b = torch.load(tmp_path / "two" / "seed-1" / "best.pt", weights_only=True)["model"]["backbone.conv1.weight"]
    assert not torch.equal(a, b)
    assert "next: archviz probe" in result.output


def test_train_resume_refuses_a_pretext_run(rotation_run, mnist):
    from archviz.train.loop import train

    with pytest.raises(ArchvizError, match="is a run of archviz pretrain --task rotation; resume it with archviz "
                                           "pretrain"):
        train("lenet", dataset=f"mnist:{mnist}", epochs=3, output=rotation_run, resume=True, **FAST)


def test_report_of_a_pretext_run(rotation_run, tmp_path):
    import re

    assert invoke("probe", rotation_run).exit_code == 0  # probe-linear.json, shown by the report
    target = tmp_path / "pre.html"
    result = invoke("report", "lenet", "--run", rotation_run, "--no-crosscheck", "-o", target)
    assert result.exit_code == 0, result.output
    page = target.read_text()
    for anchor in ("pretext", "probe", "filters"):
        assert f'<section id="{anchor}">' in page and f'href="#{anchor}"' in page
    assert '<section id="cams">' not in page  # a backbone has no class scores
    assert page.count('<img src="data:image/png;base64,') == 1 + 2 * 2  # the inputs; conv1 and conv2 pairs
    assert "linear probe on mnist:" in page and 'id="chart-probe-linear"' in page
    data = json.loads(re.search(r'id="archviz-data">(.*?)</script>', page, re.S).group(1))
    assert [row["epoch"] for row in data["run"]["history"]] == [1, 2, 3]
    assert [b["block"] for b in data["run"]["probes"]["linear"]] == ["tanh1", "pool2", "tanh3"]


def test_examples_show_each_tasks_inputs(rotation_run):
    from archviz.inside.trained import load_trained
    from archviz.pretrain.view import example_grid

    trained = load_trained(rotation_run)
    record = json.loads((rotation_run / "run.json").read_text())
    grid = example_grid(trained, record)
    assert grid.captions[:4] == ("0 deg", "90 deg", "180 deg", "270 deg") and grid.columns == 4
    assert len(grid.tiles) == 16 and all(0 <= t.min() and t.max() <= 1 for t in grid.tiles)
    import numpy as np

    first, turned = grid.tiles[0], grid.tiles[1]
    assert np.allclose(np.rot90(first, 1, axes=(0, 1)), turned)  # the second tile is the first turned 90 degrees
    for task, columns in (("jigsaw", 9), ("context", 2), ("simclr", 3), ("instdisc", 8)):
        shown = example_grid(trained, {**record, "pretext": {"task": task}})
        assert shown.columns == columns and len(shown.tiles) % columns == 0


def test_finetune_starts_from_the_pretext_backbone(rotation_run):
    import archviz
    from archviz.torch_build import to_torch
    from archviz.train.model import fit_model
    from archviz.train.task import Supervised

    task = Supervised(backbone_from=rotation_run / "best.pt")
    torch.manual_seed(0)
    net = task.wrap(to_torch(fit_model("lenet", classes=10, image_shape=(1, 28, 28), adapt="input").graph),
                    model="lenet")
    saved = torch.load(rotation_run / "best.pt", weights_only=True)["model"]
    for name in ("conv1.weight", "conv2.bias", "fc1.weight"):
        assert torch.equal(net.state_dict()[name], saved[f"backbone.{name}"])
    assert archviz.load("lenet").by_name["fc3"]  # the classifier (fc2, fc3) keeps its fresh initialisation


def test_probe_finetune_and_chosen_layers(rotation_run):
    result = invoke("probe", rotation_run, "--layers", "pool2,tanh3", "--finetune")
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()[3:5]] == ["pool2", "tanh3"]
    assert "fine-tuned from the pretext weights:" in result.output
    record = json.loads((rotation_run / "finetune" / "run.json").read_text())
    assert record["status"] == "finished" and record["settings"]["epochs"] == 3
    result = invoke("probe", rotation_run, "--layers", "fc9")
    assert result.exit_code == 2 and "did you mean" in result.output


def test_jigsaw_tiles_are_standardised_one_by_one():
    from archviz.pretrain.objectives import Jigsaw

    task = Jigsaw(classes=10, image_shape=(1, 32, 32), train_size=10, stats=None, seed=0)
    x = torch.rand(3, 1, 32, 32) * torch.tensor([1.0, 5.0, 0.1]).view(3, 1, 1, 1) + 2
    tiles, labels = task.inputs(x, None, torch.Generator().manual_seed(0))
    assert tuple(tiles.shape[:2]) == (3, 9) and labels.shape == (3,)
    assert torch.allclose(tiles.mean(dim=(-3, -2, -1)), torch.zeros(3, 9), atol=1e-5)
    assert torch.allclose(tiles.std(dim=(-3, -2, -1)), torch.ones(3, 9), atol=1e-3)
