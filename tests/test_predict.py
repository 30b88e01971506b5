"""Using a trained run (issue 20 §1): `archviz predict`, `evaluate` and `export` of a run, each held to the run's
own figures. One lenet run on the bundled digits (1 epoch, a few seconds) serves the module: its test images written
as PNG files (the dataset's own 8x8 gray format) give, through predict, the accuracy the run recorded; evaluate gives
the recorded accuracy, loss, report and confusion; the exported ONNX file, run by onnx's reference runtime, gives
torch's outputs within 1e-4 on the test images."""

from __future__ import annotations

import csv
import io
import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from archviz.cli import app
from archviz.train.run_folder import read_class_report, read_record
from test_train_data import write_folder, write_mnist

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
runner = CliRunner()
TINY = """
    name: tiny
    input: [3, 16, 16]
    layers:
      - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
      - relu
      - flatten
      - linear: {out_features: 3}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from archviz.train.loop import train

    folder = tmp_path_factory.mktemp("use") / "run"
    train("lenet", dataset="digits", epochs=1, lr=0.02, seed=0, threads=1, output=folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def test_pngs(tmp_path_factory):
    """The digits' test split as PNG files, IMAGE-LABEL.png, in two folders, with a file that is not an image."""
    from PIL import Image

    from archviz.train.data import load_dataset

    test = load_dataset("digits").test
    folder = tmp_path_factory.mktemp("pngs")
    for index, (image, label) in enumerate(zip(test.images, test.labels)):
        target = folder / ("first" if index % 2 else "second")
        target.mkdir(exist_ok=True)
        Image.fromarray(image[0]).save(target / f"{index:03d}-{label}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == "", result.stdout  # nothing half-written
    assert result.stderr.startswith("archviz: error:") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


# --- predict --------------------------------------------------------------------------------------------------------

def test_predict_on_the_test_pngs_gives_the_runs_test_accuracy(run, test_pngs):
    from archviz.train.predict import predict

    result = predict(run, [test_pngs], top=3)
    assert len(result.rows) == 359 and [row.image for row in result.rows] == sorted(row.image for row in result.rows)
    right = [row.top[0].name == row.image.rsplit("-", 1)[1].removesuffix(".png") for row in result.rows]
    assert sum(right) / len(right) == read_record(run).final["test_accuracy"]
    assert all(len(row.top) == 3 and row.top[0].probability >= row.top[1].probability >= row.top[2].probability
               for row in result.rows)


def test_predict_prepares_an_image_as_training_did(run, test_pngs):
    """The oracle written out: 8x8 -> 32x32 bilinear in 0..1, the run's recorded mean and std, softmax."""
    import torch.nn.functional as F
    from PIL import Image

    from archviz.inside.trained import load_trained
    from archviz.train.predict import predict

    file = sorted((test_pngs / "first").iterdir())[0]
    normalize = read_record(run).dataset["normalize"]
    x = torch.tensor(np.asarray(Image.open(file)), dtype=torch.float32)[None, None] / 255
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = (x - normalize["mean"][0]) / normalize["std"][0]
    with torch.no_grad():
        expected = torch.softmax(load_trained(str(run)).net(x).double(), 1)[0]
    row = predict(run, [file], top=10).rows[0]
    for guess in row.top:
        assert guess.probability == pytest.approx(float(expected[guess.index]), abs=1e-6)


def test_predict_a_folder_run_decodes_as_its_dataset(tmp_path, write_spec):
    """A folder dataset's photos are decoded by Pillow at the model's input (RGB, bilinear): predict does the same."""
    from PIL import Image

    from archviz.inside.trained import load_trained
    from archviz.train.loop import train
    from archviz.train.predict import predict

    photos = write_folder(tmp_path / "photos")
    train(write_spec(TINY), dataset=f"folder:{photos}", epochs=1, threads=1, output=tmp_path / "run", progress=False)
    file = sorted((photos / "dog").iterdir())[0]
    normalize = read_record(tmp_path / "run").dataset["normalize"]
    pixels = np.asarray(Image.open(file).convert("RGB").resize((16, 16), Image.Resampling.BILINEAR))
    x = torch.tensor(pixels, dtype=torch.float32).permute(2, 0, 1)[None] / 255
    x = (x - torch.tensor(normalize["mean"]).view(1, 3, 1, 1)) / torch.tensor(normalize["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.softmax(load_trained(str(tmp_path / "run")).net(x).double(), 1)[0]
    row = predict(tmp_path / "run", [file]).rows[0]
    assert {g.name for g in row.top} == {"cat", "dog", "panda"}
    for guess in row.top:
        assert guess.probability == pytest.approx(float(expected[guess.index]), abs=1e-6)


def test_cam_and_activations_read_an_image_file_as_predict_does(run, tmp_path, write_spec):
    """`--image FILE` (cam, activations, walkthrough) gives the model the input predict scores: decoded at the run's
    dataset size first, as its images were, then adapted to the model; a digits run's 20x20 file goes 20 -> 8 -> 32."""
    from PIL import Image

    from archviz.inside.images import read_image
    from archviz.inside.trained import load_trained
    from archviz.train.predict import decode_images, scores

    Image.fromarray(np.arange(400, dtype=np.uint8).reshape(20, 20)).save(tmp_path / "ramp.png")
    for folder in (run, _folder_run(tmp_path, write_spec)):
        trained = load_trained(str(folder))
        given = read_image(trained, tmp_path / "ramp.png")
        with torch.no_grad():
            logits = trained.net(given.tensor)
        assert torch.allclose(logits, scores(trained, decode_images(trained, [tmp_path / "ramp.png"])), atol=1e-6)
    assert read_image(load_trained(str(run)), tmp_path / "ramp.png").source.endswith(
        "ramp.png, resized 20x20 -> 8x8 (the run's images) -> 32x32")


def _folder_run(tmp_path, write_spec):
    from archviz.train.loop import train

    photos = write_folder(tmp_path / "photos")
    train(write_spec(TINY), dataset=f"folder:{photos}", epochs=1, threads=1, output=tmp_path / "run", progress=False)
    return tmp_path / "run"


def test_predict_formats(run, test_pngs):
    files = sorted((test_pngs / "first").iterdir())[:2]
    table = cli("predict", run, *files, "--top", 2)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].startswith("weights: ") and len(lines) == 3 and "%" in lines[1]
    data = json.loads(cli("predict", run, *files, "--top", 2, "--format", "json").stdout)
    assert data["classes"] == list("0123456789") and [row["image"] for row in data["images"]] == list(map(str, files))
    assert all(len(row["top"]) == 2 and set(row["top"][0]) == {"class", "index", "probability"}
               for row in data["images"])
    rows = list(csv.reader(io.StringIO(cli("predict", run, test_pngs, "-k", 3, "-f", "csv").stdout)))
    assert rows[0] == ["image", "class_1", "probability_1", "class_2", "probability_2", "class_3", "probability_3"]
    assert len(rows) == 1 + 359 and all(0 <= float(p) <= 1 for p in rows[1][2::2])
    last = json.loads(cli("predict", run, files[0], "--checkpoint", "last", "-f", "json").stdout)
    assert "last.pt" in last["weights"]


def test_predict_an_unreadable_image_is_one_line(run, tmp_path):
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a png")
    one_error_line(cli("predict", run, tmp_path), "b.png", "cannot read this image")
    one_error_line(cli("predict", run, tmp_path / "missing.png"), "missing.png")
    one_error_line(cli("predict", tmp_path, tmp_path / "a.png"), "no best.pt")
    one_error_line(cli("predict", run / "best.pt", tmp_path / "a.png", "--checkpoint", "last"), "--checkpoint")


def test_predict_and_evaluate_score_where_device_says(run, test_pngs):
    """--device cpu scores as the default does on a machine without CUDA; --device cuda there is one line."""
    torch = pytest.importorskip("torch")
    for command in (("predict", run, test_pngs / "first", "--format", "json"), ("evaluate", run, "--format", "json")):
        assert cli(*command, "--device", "cpu").stdout == cli(*command).stdout
        if not torch.cuda.is_available():
            one_error_line(cli(*command, "--device", "cuda"), "--device cuda", "no CUDA device")


# --- evaluate -------------------------------------------------------------------------------------------------------

def test_evaluate_gives_the_runs_recorded_test_figures(run):
    from archviz.train.evaluate import evaluate_run

    result = evaluate_run(run)
    final = read_record(run).final
    assert result.accuracy == final["test_accuracy"] and result.split == final["test_split"] == "test"
    assert result.loss == pytest.approx(final["test_loss"], rel=1e-5)
    saved = read_class_report(run)
    assert result.report.confusion == saved.confusion and result.report.rows == saved.rows
    text = cli("evaluate", run)
    assert text.exit_code == 0, text.output
    assert "the run recorded test accuracy" in text.stdout and ": the same" in text.stdout
    assert "precision    recall  f1-score   support" in text.stdout and "confusion" in text.stdout
    data = json.loads(cli("evaluate", run, "--format", "json").stdout)
    assert data["accuracy"] == final["test_accuracy"] and data["images"] == 359 and len(data["confusion"]) == 10


def test_evaluate_another_dataset_matches_classes_by_name(run, tmp_path):
    from archviz.train.evaluate import evaluate_run

    mnist = write_mnist(tmp_path / "mnist")  # classes 0..9, as the digits'
    result = evaluate_run(run, dataset=f"mnist:{mnist}")
    assert result.images == 50 and result.dataset == f"mnist:{mnist}" and result.recorded is None
    assert len(result.report.rows) == 10
    photos = write_folder(tmp_path / "photos")
    one_error_line(cli("evaluate", run, "--dataset", f"folder:{photos}"), "cat, dog, panda",
                   "are not classes of the run")


def test_evaluate_a_subset_of_the_classes(run, tmp_path):
    """A folder holding two of the run's classes: its labels are the run's indices of those names."""
    from PIL import Image

    from archviz.train.data import load_dataset
    from archviz.train.evaluate import evaluate_run

    test = load_dataset("digits").test
    for name in ("3", "7"):
        (tmp_path / "some" / name).mkdir(parents=True)
        for index in np.flatnonzero(test.labels == int(name))[:10]:
            Image.fromarray(test.images[index, 0]).save(tmp_path / "some" / name / f"{index}.png")
    result = evaluate_run(run, dataset=f"folder:{tmp_path / 'some'}", split="train")
    supports = {row.name: row.support for row in result.report.rows}
    assert supports["3"] + supports["7"] == result.images and supports["0"] == 0


# --- export -----------------------------------------------------------------------------------------------------

def test_exported_onnx_gives_the_runs_outputs(run, tmp_path):
    from onnx.reference import ReferenceEvaluator

    from archviz.inside.trained import load_trained
    from archviz.train.data import load_dataset
    from archviz.train.predict import scores

    trained = load_trained(str(run))
    result = cli("export", run, "-o", tmp_path / "run.onnx")
    assert result.exit_code == 0, result.output
    test = load_dataset("digits").test
    expected = scores(trained, test.images).numpy()  # (359, 10)
    # the file takes the normalised input, as the run's batches were made
    from archviz.train.batches import BatchMaker

    make_batch = BatchMaker(input_shape=trained.input_shape, stats=trained.stats, device=torch.device("cpu"),
                            channels_last=False, augment=False, flips=False)
    inputs = make_batch(torch.as_tensor(test.images)).numpy()
    (outputs,) = ReferenceEvaluator(str(tmp_path / "run.onnx")).run(None, {"input": inputs})
    assert outputs.shape == expected.shape and np.abs(outputs - expected).max() < 1e-4
    assert (outputs.argmax(1) == expected.argmax(1)).all()
    import onnx

    props = {p.key: p.value for p in onnx.load(str(tmp_path / "run.onnx")).metadata_props}
    assert json.loads(props["archviz.classes"]) == list("0123456789")
    assert json.loads(props["archviz.normalize"])["mean"] == list(trained.stats.mean)


def test_export_lenet_with_a_run_as_its_weights(run, tmp_path):
    """Both forms filters, cam and activations accept: the run folder, and its checkpoint."""
    written = {}
    for name, args in (("run", [run]), ("folder", ["lenet", "--weights", run]),
                       ("best", ["lenet", "--weights", run / "best.pt"]), ("file", [run / "best.pt"])):
        result = cli("export", *args, "-o", tmp_path / f"{name}.onnx")
        assert result.exit_code == 0, result.output
        written[name] = (tmp_path / f"{name}.onnx").read_bytes()
    assert len(set(written.values())) == 1
    one_error_line(cli("export", run, "--input", "1x8x8", "-o", tmp_path / "x.onnx"), "--input", "leave it out")


def test_export_torchscript_and_state_dict(run, tmp_path):
    from archviz.inside.trained import load_trained

    trained = load_trained(str(run))
    x = torch.randn(4, *trained.input_shape, generator=torch.Generator().manual_seed(0))
    assert cli("export", run, "--format", "torchscript", "-o", tmp_path / "run.pt").exit_code == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in recent torch, not removed
        scripted = torch.jit.load(str(tmp_path / "run.pt"))
    with torch.no_grad():
        assert torch.allclose(scripted(x), trained.net(x), atol=1e-6)
    assert cli("export", run, "--format", "state_dict", "-o", tmp_path / "run.pth").exit_code == 0
    tensors = torch.load(tmp_path / "run.pth", weights_only=True)
    assert tensors.keys() == trained.net.state_dict().keys()
    assert all(torch.equal(tensors[k], v) for k, v in trained.net.state_dict().items())
    # the state dict is a weights file like any other: `export lenet --weights run.pth` writes the same network
    result = cli("export", "lenet", "--weights", tmp_path / "run.pth", "-o", tmp_path / "again.onnx")
    assert result.exit_code == 0, result.output
    assert cli("export", run, "-o", tmp_path / "run.onnx").exit_code == 0
    from onnx.reference import ReferenceEvaluator

    inputs = {"input": x.numpy()}
    (first,) = ReferenceEvaluator(str(tmp_path / "again.onnx")).run(None, inputs)
    (second,) = ReferenceEvaluator(str(tmp_path / "run.onnx")).run(None, inputs)
    assert np.array_equal(first, second)


def test_evaluate_splits_the_data_as_the_run_did(tmp_path):
    """A run trained with --val-fraction 0.3 held out 30% for validation: evaluate's --split val is that 30%, not the
    default 10%."""
    from archviz.train import evaluate_run
    from archviz.train.data import load_dataset
    from archviz.train.loop import train

    folder = tmp_path / "run"
    train("mlp", dataset="digits", epochs=1, seed=0, threads=1, output=folder, progress=False, val_fraction=0.3)
    held_out = len(load_dataset("digits", val_fraction=0.3).val.labels)
    assert held_out != len(load_dataset("digits").val.labels)
    assert evaluate_run(folder, split="val").images == held_out
