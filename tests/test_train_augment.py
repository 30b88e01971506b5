"""Augmentation presets and explicit normalisation (issue 20 §2.4): what each preset does and records, digits never
mirrored, cutout and mixup, an exact resume under the strongest preset, and runs from before the presets."""

from __future__ import annotations

import json

import pytest

from archviz.train import run_folder
from archviz.train.batches import AUGMENTATIONS, BatchMaker, Stats, describe_augmentation, normalization
from archviz.train.choices import Augment
from archviz.train.loop import train
from archviz.train.run import TrainingInterrupted
from test_train_data import write_folder

torch = pytest.importorskip("torch")
TINY = dict(dataset="digits", batch_size=64, threads=1, progress=False)


def _maker(preset, *, flips=False, channels=1):
    return BatchMaker(input_shape=(channels, 16, 16), stats=Stats((0.5,) * channels, (0.25,) * channels),
                      device=torch.device("cpu"), channels_last=False, augment=preset, flips=flips)


def test_light_is_the_augmentation_of_runs_before_the_presets():
    images = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8)
    old, light = _maker(True), _maker(Augment.LIGHT)
    first, second = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(old(images, generator=first), light(images, generator=second))
    assert not _maker(False).augment and _maker("none").augmentation is None


def test_digits_are_never_mirrored_and_photos_get_colour_jitter():
    for preset in (Augment.LIGHT, Augment.STANDARD, Augment.STRONG):
        assert "mirror" not in describe_augmentation(preset, flips=False)
        assert "mirror half of them" in describe_augmentation(preset, flips=True)
    assert "brightness and contrast" in describe_augmentation(Augment.STANDARD, flips=True)
    assert "brightness" not in describe_augmentation(Augment.STANDARD, flips=False)
    assert "cutout" in describe_augmentation(Augment.STRONG, flips=False) and AUGMENTATIONS[Augment.STRONG].mixup


def test_cutout_sets_a_square_to_the_mean():
    maker = _maker(Augment.STRONG)
    x = maker._cutout(torch.ones(2, 1, 16, 16), torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
    assert torch.equal(x[0, 0] == 0, torch.nn.functional.pad(torch.ones(4, 4, dtype=torch.bool), (6, 6, 6, 6)))
    assert int((x[1] == 0).sum()) == 2 * 2  # centred on the top-right corner: a quarter of the square inside


@pytest.mark.parametrize("preset", ["none", "light", "standard", "strong"])
def test_each_preset_trains_and_is_recorded(preset, tmp_path):
    result = train("mlp", output=tmp_path / "r", epochs=1, augment=preset, **TINY)
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    assert record["settings"]["augment"] == preset and result.settings.augment == preset
    text = record["dataset"]["augmentation"]
    assert (text is None) if preset == "none" else text.startswith(f"{preset} augmentation")


def test_normalisation_is_explicit_and_recorded(tmp_path):
    train("mlp", output=tmp_path / "r", epochs=1, normalize="imagenet", **TINY)
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    assert record["settings"]["normalize"] == "imagenet"
    assert record["dataset"]["normalize"] == {"mean": [pytest.approx(0.449)], "std": [pytest.approx(0.226)]}
    assert normalization("none", None, 3) == Stats((0.0,) * 3, (1.0,) * 3)
    assert normalization("imagenet", None, 3) == Stats((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_strong_augmentation_on_photos_resumes_exactly(tmp_path):
    folder = write_folder(tmp_path / "photos", per_class=12)
    options = dict(dataset=f"folder:{folder}", epochs=2, batch_size=4, threads=1, progress=False, augment="strong")
    whole = train("lenet", output=tmp_path / "whole", **options)
    with pytest.raises(TrainingInterrupted):
        train("lenet", output=tmp_path / "cut", stop=lambda epoch, batch: (epoch, batch) == (1, 3), **options)
    train("lenet", output=tmp_path / "cut", resume=True, **{**options, "augment": None})
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[key], b[key]) for key in a) and whole.settings.augment == "strong"


def test_a_run_json_from_before_the_presets_still_reads(tmp_path):
    from archviz.train.checkpoint import check_structure

    folder = tmp_path / "r"
    train("mlp", output=folder, epochs=1, **TINY)
    record = json.loads((folder / "run.json").read_text())
    record["settings"]["augment"] = True
    record["settings"].pop("normalize")
    (folder / "run.json").write_text(json.dumps(record))
    assert run_folder.read_record(folder).settings["augment"] is True
    from archviz.train.settings import Settings

    assert Settings.from_dict(run_folder.read_record(folder).settings).augment == Augment.LIGHT
    state = torch.load(folder / "last.pt", weights_only=True)
    state["settings"]["augment"] = False
    state["settings"].pop("normalize")
    check_structure(state, folder / "last.pt")
