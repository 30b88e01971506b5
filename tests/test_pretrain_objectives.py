"""DeepCluster and colorization as objectives of `archviz pretrain` (archviz.pretrain.clustering, .colorization):
short real runs whose pretext loss falls, the clusters and their balanced sampling, exact resume, and the colour
targets; NMI against scikit-learn's."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from archviz.cli import app  # noqa: E402
from archviz.errors import ArchvizError  # noqa: E402
from archviz.pretrain import objectives  # noqa: E402
from archviz.pretrain.clustering import DeepCluster, normalized_mutual_information, reset_classifier  # noqa: E402
from archviz.pretrain.colorization import Colorization, lab_to_rgb  # noqa: E402
from archviz.pretrain.loop import pretrain  # noqa: E402
from archviz.pretrain.tasks import Task, ab_bins, rgb_to_lab  # noqa: E402
from archviz.train.batches import Stats  # noqa: E402
from archviz.train.run import TrainingInterrupted  # noqa: E402

DIGITS_TRAIN = 1259  # digits' training split
BATCHES = DIGITS_TRAIN // 32 + 1  # batches of 32, the last of 11 images: 40 an epoch
CLUSTERS = objectives.CLUSTERS_PER_CLASS * 10  # digits has 10 classes
FAST = dict(threads=1, progress=False)
COLOUR_NET = """
    name: colour_net
    input: [3, 32, 32]
    params: {num_classes: 2}
    layers:
      - conv2d: {out_channels: 16, kernel_size: 3, padding: 1}
      - relu
      - maxpool2d: {kernel_size: 2}
      - conv2d: {out_channels: 32, kernel_size: 3, padding: 1}
        name: conv2
      - relu: {}
        name: relu2
      - maxpool2d: {kernel_size: 2}
      - flatten
      - linear: {out_features: $num_classes}
"""  # the colour map: relu2, 32x16x16 (the pooling after it is stepped over)


@pytest.fixture(scope="module", autouse=True)
def registered():
    """Both objectives in the registry, as objectives.py will list them."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(objectives.OBJECTIVES, Task.DEEPCLUSTER, DeepCluster)
        patch.setitem(objectives.OBJECTIVES, Task.COLORIZATION, Colorization)
        yield


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """An uninterrupted 2-epoch DeepCluster run of lenet on digits."""
    folder = tmp_path_factory.mktemp("deepcluster") / "whole"
    return pretrain("lenet", task="deepcluster", epochs=2, output=folder, **FAST)


# --- DeepCluster --------------------------------------------------------------------------------------------

def test_deepcluster_learns_the_clusters(whole):
    for row in whole.history:  # each epoch starts from a new head, at chance: loss ln(k), agreement 1 / k
        assert row["train_loss"] < math.log(CLUSTERS), row
        assert row["train_accuracy"] > 4 / CLUSTERS and row["val_accuracy"] > 4 / CLUSTERS, row
    assert whole.history[1]["train_loss"] < whole.history[0]["train_loss"] - 0.2, whole.history


def test_pseudo_labels_cover_every_cluster(whole):
    state = load(whole.folder / "last.pt")["pretext"]
    labels, centroids = state["pseudo_labels"], state["centroids"]
    assert state["task"] == "deepcluster" and labels.shape == (DIGITS_TRAIN,) and labels.dtype == torch.int64
    assert torch.bincount(labels, minlength=CLUSTERS).min() >= 1 and int(labels.max()) == CLUSTERS - 1
    assert tuple(centroids.shape) == (CLUSTERS, 120)  # lenet's backbone ends at tanh3, 120 features
    assert len(state["nmi"]) == 1 and 0 < state["nmi"][0] < 1  # epoch 2's clusters against epoch 1's


def test_the_epoch_order_draws_every_cluster_about_equally():
    k, count = 10, 5000
    labels = torch.cat([torch.full((size,), cluster) for cluster, size in enumerate(
        np.linspace(20, 2000, k).astype(int).tolist())])  # clusters of 20 to 2000 images
    objective = DeepCluster(classes=1, image_shape=(1, 8, 8), train_size=count, stats=None, seed=0)
    objective.labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))][:count]
    objective.labels[:k] = torch.arange(k)  # every cluster kept after the cut
    order = objective.epoch_order(None, SimpleNamespace(order=torch.Generator().manual_seed(1)), 1)
    drawn = torch.bincount(objective.labels[order], minlength=k).double()
    expected = count / k
    chi_square = float(((drawn - expected) ** 2 / expected).sum())
    assert len(order) == count and chi_square < 3 * (k - 1), drawn.tolist()  # 9 degrees of freedom: mean 9


def test_the_epoch_order_comes_from_the_runs_order_generator():
    objective = DeepCluster(classes=2, image_shape=(1, 8, 8), train_size=40, stats=None, seed=0)
    objective.labels = torch.arange(40) % 20
    first, second = (objective.epoch_order(None, SimpleNamespace(order=torch.Generator().manual_seed(5)), 1)
                     for _ in range(2))
    assert torch.equal(first, second) and objective.k == 20


def test_the_classifier_is_drawn_anew_in_place_without_optimiser_state():
    linear, other = torch.nn.Linear(120, 300), torch.nn.Linear(3, 3)
    optimizer = torch.optim.AdamW([*linear.parameters(), *other.parameters()])
    (linear(torch.randn(2, 120)).sum() + other(torch.randn(2, 3)).sum()).backward()
    optimizer.step()
    weight = linear.weight
    reset_classifier(SimpleNamespace(optimizer=optimizer), linear, seed=3)
    assert linear.weight is weight and not linear.bias.any()
    weights = linear.weight.detach()
    assert abs(float(weights.std()) - 0.01) < 0.001 and abs(float(weights.mean())) < 0.001
    assert linear.weight not in optimizer.state and linear.bias not in optimizer.state
    assert other.weight in optimizer.state
    copy = torch.nn.Linear(120, 300)
    reset_classifier(SimpleNamespace(optimizer=optimizer), copy, seed=3)
    assert torch.equal(copy.weight, linear.weight)


def test_nmi_equals_scikit_learns():
    metrics = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(0)
    first = torch.randint(7, (500,), generator=generator)
    second = torch.where(torch.rand(500, generator=generator) < 0.6, (first + 2) % 7, torch.randint(7, (500,)))
    expected = metrics.normalized_mutual_info_score(first.numpy(), second.numpy())
    assert normalized_mutual_information(first, second, 7) == pytest.approx(expected, abs=1e-12)
    assert normalized_mutual_information(first, (first * 3) % 7, 7) == pytest.approx(1.0)


def _stop_after_epoch(epoch: int):
    """Stops at the end of `epoch`, after its checkpoint: the loop asks twice with (epoch, last batch), within the
    epoch and after it; the first answer would stop before validation."""
    asked = []

    def stop(at_epoch: int, batch: int) -> bool:
        if (at_epoch, batch) == (epoch, BATCHES):
            asked.append(batch)
        return len(asked) == 2

    return stop


@pytest.mark.parametrize("stop, message", [
    (_stop_after_epoch(1), "interrupted after epoch 1"),
    (lambda epoch, batch: (epoch, batch) == (2, 7), f"interrupted in epoch 2 after batch 7 of {BATCHES}"),
], ids=["after-epoch-1", "mid-epoch"])
def test_a_resumed_deepcluster_run_ends_with_the_same_weights(whole, tmp_path, stop, message):
    with pytest.raises(TrainingInterrupted, match=message):
        pretrain("lenet", task="deepcluster", epochs=2, output=tmp_path / "cut", stop=stop, **FAST)
    pretrain("lenet", task="deepcluster", epochs=2, output=tmp_path / "cut", resume=True, **FAST)
    for name in ("best.pt", "last.pt"):
        a, b = load(whole.folder / name), load(tmp_path / "cut" / name)
        assert a["model"].keys() == b["model"].keys()
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), (name, key)
        assert torch.equal(a["pretext"]["pseudo_labels"], b["pretext"]["pseudo_labels"]), name
        assert a["pretext"]["nmi"] == b["pretext"]["nmi"], name


# --- colorization -------------------------------------------------------------------------------------------

def test_colorization_refuses_a_grayscale_dataset():
    with pytest.raises(ArchvizError, match="grayscale"):
        pretrain("lenet", task="colorization", epochs=1, **FAST)


def test_colorization_of_grayscale_data_is_one_line_in_the_cli():
    result = CliRunner().invoke(app, ["pretrain", "lenet", "--task", "colorization", "--epochs", "1"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "grayscale" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def write_colour_folder(folder, *, per_class: int = 30, side: int = 32):
    """Two classes of coloured shapes: a warm square on a cool background, and a cool disc on a warm one."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:side, :side]
    for name, warm_shape in (("squares", True), ("discs", False)):
        (folder / name).mkdir(parents=True)
        for index in range(per_class):
            warm = rng.uniform([150, 20, 0], [255, 120, 60])
            cool = rng.uniform([0, 60, 120], [60, 160, 255])
            centre, radius = rng.uniform(10, side - 10, 2), rng.uniform(5, 9)
            if warm_shape:
                inside = (abs(rows - centre[0]) < radius) & (abs(cols - centre[1]) < radius)
            else:
                inside = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < radius ** 2
            shape, background = (warm, cool) if warm_shape else (cool, warm)
            image = np.where(inside[..., None], shape, background).astype(np.uint8)  # (H, W, 3)
            Image.fromarray(image).save(folder / name / f"{index:03d}.png")
    return folder


def test_colorization_learns_on_colour_images(tmp_path, write_spec):
    data = write_colour_folder(tmp_path / "shapes")
    result = pretrain(write_spec(COLOUR_NET), task="colorization", dataset=f"folder:{data}", epochs=3, batch_size=4,
                      lr=0.01, output=tmp_path / "run", **FAST)
    output = result.graph.by_name[result.graph.output]
    assert (output.name, output.out_shape) == ("relu2", (32, 16, 16))
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0] - 0.5 and losses[-1] < math.log(len(ab_bins())) - 1, losses  # chance: ln Q
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"], result.history
    model = load(tmp_path / "run" / "last.pt")["model"]
    assert tuple(model["head.weight"].shape) == (len(ab_bins()), 32, 1, 1)


def test_colorization_refuses_a_model_with_a_gray_input(tmp_path):
    data = write_colour_folder(tmp_path / "shapes", per_class=5)
    with pytest.raises(ArchvizError):  # lenet takes 1 channel: the photos are read as gray for it
        pretrain("lenet", task="colorization", dataset=f"folder:{data}", epochs=1, output=tmp_path / "run", **FAST)
    gray = Colorization(classes=2, image_shape=(3, 32, 32), train_size=10, stats=Stats((0.5,), (0.2,)), seed=0)
    with pytest.raises(ArchvizError, match="the model takes 1 channel.*3-channel input"):
        gray.head((16, 10, 10))


def test_a_uniformly_coloured_image_has_one_target_everywhere():
    stats = Stats(mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3))
    objective = Colorization(classes=2, image_shape=(3, 32, 32), train_size=10, stats=stats, seed=0)
    objective.head((32, 8, 8))
    colour = torch.tensor([0.8, 0.3, 0.1]).view(1, 3, 1, 1)
    mean, std = torch.tensor(stats.mean).view(1, 3, 1, 1), torch.tensor(stats.std).view(1, 3, 1, 1)
    x = ((colour - mean) / std).expand(2, 3, 32, 32)
    inputs, targets = objective.inputs(x, None, None)
    ab = rgb_to_lab(colour)[0, 1:, 0, 0]
    nearest_bin = int(((ab_bins() - ab) ** 2).sum(dim=1).argmin())
    assert targets.shape == (2, 8, 8) and (targets == nearest_bin).all()
    lightness = float(rgb_to_lab(colour)[0, 0, 0, 0]) / 100
    assert torch.allclose(inputs, ((lightness - mean) / std).expand(2, 3, 32, 32), atol=1e-5)
    assert "261 quantised ab colours per position of the 8x8 map" in objective.describe()


def test_lab_to_rgb_inverts_rgb_to_lab():
    rgb = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-4)


def test_the_examples_show_the_inputs_and_the_quantised_colours():
    stats = Stats(mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3))
    mean, std = torch.tensor(stats.mean).view(1, 3, 1, 1), torch.tensor(stats.std).view(1, 3, 1, 1)
    x = (torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) - mean) / std
    colorization = Colorization(classes=2, image_shape=(3, 16, 16), train_size=10, stats=stats, seed=0)
    pictures, captions, columns = colorization.examples(x, torch.Generator())
    assert columns == 3 and len(pictures) == len(captions) == 6 and captions[:2] == ["image", "lightness in"]
    assert all(tuple(picture.shape) == (3, 16, 16) for picture in pictures) and torch.equal(pictures[0], x[0])
    shown = (pictures[2] * std[0] + mean[0]).clamp(0, 1)  # bins 10 wide in ab: close to the image, not equal
    assert float((shown - (x[0] * std[0] + mean[0])).abs().mean()) < 0.05
    clusters = DeepCluster(classes=2, image_shape=(3, 16, 16), train_size=10, stats=stats, seed=0)
    pictures, captions, columns = clusters.examples(x, torch.Generator())
    assert columns == 2 and captions == ["class: its cluster of 10"] * 2


def test_every_pretext_task_declares_the_objective_and_loop_interfaces():
    """Each objective has every member PretextObjective declares; the loop's tasks every member Task declares."""
    from archviz.pretrain.loop import PretextTask
    from archviz.pretrain.objectives import PretextObjective
    from archviz.train.task import Supervised, Task as LoopTask

    def members(protocol) -> set[str]:
        return {name for name in vars(protocol) if not name.startswith("_")} | set(protocol.__annotations__)

    known = {**objectives.OBJECTIVES, Task.DEEPCLUSTER: DeepCluster, Task.COLORIZATION: Colorization}
    assert set(known) == set(Task)
    for task, objective in known.items():
        assert objective.task == task
        assert not [name for name in members(PretextObjective) - {"stats"} if not hasattr(objective, name)], task
    for runner in (Supervised(), PretextTask("rotation")):
        missing = [name for name in members(LoopTask) if not hasattr(runner, name) and name != "answers_per_image"]
        assert not missing and runner.kind in ("train", "pretrain")
