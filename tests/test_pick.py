"""`archviz pick`: budgets, filtering, ordering and the Pareto front on hand-made records; torchvision's published
top-1 read from a small synthetic models file and spot-checked against the installed torchvision; the CLI's bad input
(one line, exit 2) and a real run over the zoo (fast: formulas, no tracing)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from archviz.analysis.pick import (
    Budget, Candidate, Figures, PickOptions, Row, Source, analyse, candidates, chosen_accuracy, exceeded,
    mark_fronts, ordered, params_checked, without_twins, parse_count, parse_milliseconds, pareto_front, pick,
)
from archviz.analysis.published import PublishedAccuracy, read_weights_file, torchvision_accuracies
from archviz.cli import app
from archviz.errors import SpecError

runner = CliRunner()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHVIZ_CACHE_DIR", str(tmp_path / "cache"))


def accuracy(top1: float, *, crop: int = 224, weights: str = "W.IMAGENET1K_V1") -> PublishedAccuracy:
    return PublishedAccuracy("m", weights, top1, None, crop, None, "https://example.org/recipe", "models/m.py")


def row(name: str, *, top1: float | None, macs: int, params: int = 1, memory: int | None = None,
        latency: float | None = None, budget: Budget = Budget()) -> Row:
    figures = Figures(params=params, macs=macs, classes=1000, memory_bytes=memory, latency_s=latency)
    candidate = Candidate(name, Source.TORCHVISION, None if top1 is None else accuracy(top1), "")
    return Row(candidate, figures, exceeded(figures, budget))


# budgets ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("1G", 10**9), ("25M", 25 * 10**6), ("4.1e9", 4_100_000_000), ("2.5K", 2_500), ("3,000,000", 3 * 10**6),
    ("600m", 600 * 10**6), ("12", 12),
])
def test_counts_are_read_with_their_suffix(text, expected):
    assert parse_count(text, what="--max-macs") == expected


@pytest.mark.parametrize("text", ["1X", "", "G", "-5", "1 GB", "0", "1e"])
def test_a_bad_count_is_an_error(text):
    with pytest.raises(SpecError, match="--max-macs"):
        parse_count(text, what="--max-macs")


def test_latency_is_read_in_milliseconds():
    assert parse_milliseconds("5", what="--max-latency") == pytest.approx(5e-3)
    assert parse_milliseconds("12.5ms", what="--max-latency") == pytest.approx(12.5e-3)
    assert parse_milliseconds("0.5s", what="--max-latency") == pytest.approx(0.5)
    with pytest.raises(SpecError):
        parse_milliseconds("0", what="--max-latency")


@pytest.mark.parametrize("budget, over", [
    (Budget(), ()),
    (Budget(max_params=10), ("params",)),
    (Budget(max_params=11), ()),  # at the limit fits
    (Budget(max_macs=99), ("macs",)),
    (Budget(max_macs=100), ()),
    (Budget(max_memory_bytes=999), ("memory",)),
    (Budget(max_latency_s=0.001), ("latency",)),
    (Budget(max_latency_s=0.002), ()),
    (Budget(max_params=1, max_macs=1, max_memory_bytes=1, max_latency_s=1e-9), ("params", "macs", "memory", "latency")),
])
def test_each_budget_filters_on_its_own_figure(budget, over):
    figures = Figures(params=11, macs=100, classes=1000, memory_bytes=1000, latency_s=0.002)
    assert exceeded(figures, budget) == over


def test_a_figure_not_computed_is_not_held_against_its_budget():
    assert exceeded(Figures(params=1, macs=1, classes=1000), Budget(max_memory_bytes=1, max_latency_s=1e-9)) == ()


# ordering and the front ---------------------------------------------------------------------------------------------

def test_rows_are_ordered_by_published_top1_then_the_rows_without_one_by_macs():
    rows = [row("a", top1=None, macs=50), row("b", top1=70.0, macs=300), row("c", top1=80.0, macs=900),
            row("d", top1=None, macs=10), row("e", top1=70.0, macs=200)]
    assert [r.candidate.name for r in ordered(rows)] == ["c", "e", "b", "d", "a"]


def test_pareto_front_of_a_hand_made_set():
    points = {  # (MACs, top-1)
        "tiny": (40, 60.0),     # cheapest: on the front
        "small": (100, 70.0),   # on
        "waste": (300, 69.0),   # dominated by small (cheaper and better)
        "mid": (300, 75.0),     # on
        "twin": (300, 75.0),    # the same point as mid: neither dominates the other
        "big": (900, 82.0),     # on
        "bigger": (1000, 82.0),  # dominated by big (same top-1, more MACs)
        "slow": (950, 80.0),    # dominated by big
    }
    assert pareto_front(points) == {"tiny", "small", "mid", "twin", "big"}


def test_fronts_are_marked_among_rows_with_a_top1_only():
    rows = mark_fronts([row("a", top1=70.0, macs=100, latency=0.003), row("b", top1=75.0, macs=200, latency=0.001),
                        row("c", top1=None, macs=10, latency=0.0001), row("d", top1=72.0, macs=300, latency=0.002)])
    marks = {r.candidate.name: (r.on_front, r.on_latency_front) for r in rows}
    assert marks == {"a": (True, False), "b": (True, True), "c": (False, False), "d": (False, False)}


def test_the_accuracy_at_the_input_size_is_chosen_before_a_better_one_at_another():
    at_384, at_224 = accuracy(85.3, crop=384, weights="W.E2E"), accuracy(81.9, crop=224, weights="W.LINEAR")
    assert chosen_accuracy((at_384, at_224), (3, 224, 224)) == (at_224, "")
    chosen, note = chosen_accuracy((at_384, at_224), (3, 160, 160))
    assert chosen is at_384 and note == "published at 384x384, analysed at 160x160"


# the published top-1 ------------------------------------------------------------------------------------------------

SYNTHETIC_MODELS_FILE = '''
    from functools import partial
    from typing import Optional
    from ._meta import _IMAGENET_CATEGORIES

    _COMMON_META = {"min_size": (1, 1), "categories": _IMAGENET_CATEGORIES}
    _RECIPE: str = "https://example.org/recipe"


    class Net_Weights(WeightsEnum):
        IMAGENET1K_V1 = Weights(
            url="https://example.org/v1.pth",
            transforms=partial(ImageClassification, crop_size=224),
            meta={**_COMMON_META, "num_params": 1234, "recipe": _RECIPE,
                  "_metrics": {"ImageNet-1K": {"acc@1": 70.5, "acc@5": 89.25}}},
        )
        IMAGENET1K_V2 = Weights(
            url="https://example.org/v2.pth",
            transforms=partial(ImageClassification, crop_size=288, resize_size=320),
            meta={**_COMMON_META, "num_params": 1234, "_metrics": {"ImageNet-1K": {"acc@1": 74.125}}},
        )
        DEFAULT = IMAGENET1K_V2


    class Other_Weights(WeightsEnum):
        COCO_V1 = Weights(url="x", transforms=None, meta={"_metrics": {"COCO-val2017": {"box_map": 37.0}}})


    @register_model()
    @handle_legacy_interface(weights=("pretrained", Net_Weights.IMAGENET1K_V1))
    def net(*, weights: Optional[Net_Weights] = None, progress: bool = True, **kwargs):
        return None


    @register_model()
    def detector(*, weights: Other_Weights | None = None):
        return None


    def _helper(weights: Optional[Net_Weights]):  # not registered: not a builder
        return None
'''


def test_the_reader_parses_weights_metadata_without_running_it(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(textwrap.dedent(SYNTHETIC_MODELS_FILE))
    found = read_weights_file(path, source="models/net.py")
    assert list(found) == ["net"]  # the detector publishes no ImageNet-1K top-1; _helper is not registered
    best, first = found["net"]
    assert (best.weights, best.top1, best.top5, best.crop_size, best.num_params, best.recipe) == (
        "Net_Weights.IMAGENET1K_V2", 74.125, None, 288, 1234, "")
    assert (first.weights, first.top1, first.top5, first.crop_size, first.recipe, first.source) == (
        "Net_Weights.IMAGENET1K_V1", 70.5, 89.25, 224, "https://example.org/recipe", "models/net.py")


def test_a_file_that_does_not_parse_publishes_nothing(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("def (:\n")
    assert read_weights_file(path) == {}


def test_installed_torchvision_resnet50_as_published():
    pytest.importorskip("torchvision")
    weights = {w.weights: w for w in torchvision_accuracies()["resnet50"]}
    # torchvision's models/resnet.py: ResNet50_Weights' `_metrics` and `num_params`, as published
    assert weights["ResNet50_Weights.IMAGENET1K_V1"].top1 == 76.130
    assert weights["ResNet50_Weights.IMAGENET1K_V2"].top1 == 80.858
    assert {w.num_params for w in weights.values()} == {25557032}


def test_reading_the_published_top1_and_picking_from_the_zoo_import_neither_torch_nor_numpy():
    code = ("import sys\n"
            "from archviz.analysis.pick import pick, Budget, PickOptions, Source\n"
            "pick(Budget(max_macs=10**9), PickOptions(), sources=[Source.ZOO])\n"
            "heavy = sorted(m for m in ('torch', 'numpy', 'torchvision') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_zoo_candidates_carry_their_torchvision_builders_accuracy():
    found = {c.name: c for c in candidates([Source.ZOO], input=(3, 224, 224))}
    if torchvision_accuracies():
        assert found["resnet50"].accuracy.weights == "ResNet50_Weights.IMAGENET1K_V2"
        assert found["resnet50"].accuracy_note == "the network of torchvision:resnet50"
    assert found["resnet50_v1"].accuracy is None  # the paper's network: torchvision publishes no weights for it


def test_weights_of_another_size_than_the_network_are_noted():
    published = PublishedAccuracy("m", "W.V1", 77.0, None, 299, 27_161_264, "", "")
    candidate = Candidate("m", Source.TORCHVISION, published, "published at 299x299, analysed at 224x224")
    noted = params_checked(candidate, Figures(params=23_834_568, macs=1, classes=1000))
    assert noted.accuracy_note == ("published at 299x299, analysed at 224x224; its weights hold 27,161,264 params, "
                                   "the network analysed 23,834,568")
    assert params_checked(candidate, Figures(params=27_161_264, macs=1, classes=1000)) is candidate


def test_a_torchvision_model_is_traced_at_the_input_or_left_out_with_the_reason():
    pytest.importorskip("torchvision")
    small = analyse(Candidate("torchvision:mobilenet_v3_small", Source.TORCHVISION, None, ""), PickOptions())
    assert (small["params"], small["classes"]) == (2_542_856, 1000)  # torchvision's num_params for its weights
    vit = analyse(Candidate("torchvision:vit_b_16", Source.TORCHVISION, None, ""), PickOptions(input=(3, 160, 160)))
    assert not vit["not_task"] and vit["reason"].startswith("not analysable at 3x160x160: ")
    assert "Expected 224 but got 160" in vit["reason"]


def test_a_zoo_model_and_its_torchvision_twin_are_listed_once():
    pytest.importorskip("torchvision")
    kept, twins = without_twins(candidates([Source.ZOO, Source.TORCHVISION], input=(3, 224, 224)))
    names = {candidate.name for candidate in kept}
    assert {("resnet50", "torchvision:resnet50"), ("alexnet_owt", "torchvision:alexnet")} <= set(twins)
    assert "resnet50" not in names and "alexnet_owt" not in names
    assert {"torchvision:resnet50", "torchvision:alexnet", "resnet50_v1", "alexnet_paper"} <= names
    zoo_only, none = without_twins(candidates([Source.ZOO], input=(3, 224, 224)))
    assert none == () and "resnet50" in {candidate.name for candidate in zoo_only}


def test_without_torchvision_the_default_is_the_zoo_and_asking_for_torchvision_is_an_error(monkeypatch):
    import archviz.analysis.pick as pick_module
    import archviz.analysis.published as published_module
    from archviz.errors import MissingDependencyError

    monkeypatch.setattr(published_module, "torchvision_models_dir", lambda: None)
    monkeypatch.setattr(pick_module, "torchvision_accuracies", lambda: {})
    assert pick_module.default_sources() == [Source.ZOO]
    with pytest.raises(MissingDependencyError, match="--source torchvision needs torchvision"):
        candidates([Source.TORCHVISION], input=(3, 224, 224))


def test_timm_needs_a_pattern():
    with pytest.raises(SpecError, match="--timm PATTERN"):
        candidates([Source.TIMM], input=(3, 224, 224))


# a real pick over the zoo -------------------------------------------------------------------------------------------

def test_pick_over_the_zoo_filters_orders_and_leaves_out_what_is_no_imagenet_classifier():
    chosen = pick(Budget(max_macs=2 * 10**9), PickOptions(), sources=[Source.ZOO])
    assert all(r.figures.macs <= 2 * 10**9 for r in chosen.fitting)
    assert all("macs" in r.over for r in chosen.over_budget) and chosen.over_budget
    top1 = [r.candidate.accuracy.top1 for r in chosen.fitting if r.candidate.accuracy]
    assert top1 == sorted(top1, reverse=True)
    left = {item.candidate.name: item for item in chosen.left}
    assert left["lenet"].not_task and "1x32x32" in left["lenet"].reason
    assert "resnet50" in {r.candidate.name for r in chosen.over_budget}


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_pick_from_the_zoo_as_text_and_json(tmp_path):
    text = run("pick", "--max-macs", "1G", "--source", "zoo")
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines()[2].split() == ["Model", "Top-1", "Weights", "Params", "MACs", "Front"]
    assert "Pareto front of published top-1 against MACs" in text.stdout
    result = run("pick", "--max-params", "30M", "--source", "zoo", "--format", "json", "-o", tmp_path / "pick.html")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["budget"]["max_params"] == 30 * 10**6
    assert all(m["params"] <= 30 * 10**6 and m["over"] == [] for m in data["fitting"])
    assert [m["model"] for m in data["fitting"] if m["on_front"]]
    resnet50 = next(m for m in data["fitting"] if m["model"] == "resnet50")
    if resnet50["top1"] is not None:  # torchvision installed: its weights, best first, the chosen one named
        assert [w["weights"] for w in resnet50["published_weights"]] == [
            "ResNet50_Weights.IMAGENET1K_V2", "ResNet50_Weights.IMAGENET1K_V1"]
        assert resnet50["weights"] == "ResNet50_Weights.IMAGENET1K_V2" and resnet50["top1"] == 80.858
    page = (tmp_path / "pick.html").read_text()
    assert "Plotly" in page and 'id="chart-accuracy-macs"' in page and "pick-table" in page


def test_cli_memory_and_latency_columns(tmp_path):
    result = run("pick", "--max-memory", "2GB", "--batch", "8", "--train", "--max-latency", "5", "--device", "a100",
                 "--source", "zoo", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["train_optimizer"] == "sgd" and data["budget"]["max_latency_s"] == pytest.approx(0.005)
    for model in data["fitting"]:
        assert model["memory_bytes"] <= 2 * 10**9 and model["latency_s"] <= 0.005
    assert all(set(m["over"]) <= {"memory", "latency"} and m["over"] for m in data["over_budget"])


@pytest.mark.parametrize("args, message", [
    (["--max-macs", "1X"], "--max-macs: '1X' is not a count"),
    (["--max-params", "0"], "--max-params: '0' is less than one"),
    (["--max-memory", "8XB"], "--max-memory: '8XB' is not an amount of memory"),
    (["--max-latency", "5"], "--max-latency needs --device"),
    (["--max-latency", "-1", "--device", "a100"], "--max-latency: '-1' is not a positive time"),
    (["--device", "a9000"], "a9000"),
    (["--source", "timm"], "--source timm needs --timm PATTERN"),
    (["--source", "nowhere"], "--source"),
    (["--input", "3x5"], "--input '3x5': pick analyses ImageNet classifiers"),
    (["--input", "1x224x224"], "which take RGB images"),
    (["--task", "coco"], "--task"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = run("pick", "--source", "zoo", *args) if "--source" not in args else run("pick", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output


def test_the_page_draws_the_front_and_switches_its_axis(tmp_path):
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs Debian's chromium (scripts/setup.sh installs it)")
    playwright = pytest.importorskip("playwright.sync_api")
    from archviz.render.html.pick_page import write_pick_page

    chosen = pick(Budget(max_macs=8 * 10**9), PickOptions(), sources=[Source.ZOO])
    path = write_pick_page(chosen, tmp_path / "pick.html")
    front = sorted((row.figures.macs, row.candidate.name) for row in chosen.fitting if row.on_front)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        problems = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(path.as_uri())
        page.wait_for_function("document.getElementById('chart-accuracy-macs').data !== undefined")
        traces = page.evaluate("document.getElementById('chart-accuracy-macs').data.map(t => [t.name, t.x, t.text])")
        assert page.evaluate("document.getElementById('chart-accuracy-macs').layout.xaxis.type") == "log"
        page.click("#log-scale")
        assert page.evaluate("document.getElementById('chart-accuracy-macs').layout.xaxis.type") == "linear"
        browser.close()
    assert not problems, problems
    drawn = {name: (x, text) for name, x, text in traces}
    assert drawn["Pareto front"] == ([macs for macs, _ in front], [name for _, name in front])
    assert len(drawn["within budget"][0]) + len(front) == sum(row.candidate.accuracy is not None
                                                                for row in chosen.fitting)
