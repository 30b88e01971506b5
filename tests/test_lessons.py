"""The lessons (docs/lessons/*.md) follow the course: the figures it prints are in the outputs the pages show.

The outputs themselves are regenerated and checked by scripts/update_docs.py (tests/test_readme.py runs its --check),
and the training examples by scripts/run_examples.py; here each course figure is looked for in the output of the
command that shows it, written as the course printed it. The pages' structure (a command, its output, an exercise),
their pictures and the repeatability of their training commands are checked too.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
LESSONS = ROOT / "docs" / "lessons"
sys.path.insert(0, str(ROOT / "scripts"))

from update_docs import BLOCK  # noqa: E402  (scripts/ is not a package)

PAGES = ("01-why-cnns.md", "02-convolution-arithmetic.md", "03-lenet.md", "04-alexnet.md", "05-vgg.md",
         "06-googlenet-resnet.md", "07-training.md", "08-seeing-inside.md", "09-learning-without-labels.md")
TRAINING = ("train ", "compare ", "sweep ", "pretrain ", "probe ")  # commands whose results depend on threads

# (page, the command, a figure the course prints, as printed or as archviz writes the course's arithmetic)
COURSE_FIGURES = [
    ("01-why-cnns.md", "explain mlp fc1", "(1024 + 1)*300"),
    ("02-convolution-arithmetic.md", "explain course_six_filters conv", "6x28x28"),
    ("02-convolution-arithmetic.md", "explain course_quiz conv", "(32 - 5 + 2*2) + 1 = 32"),
    ("02-convolution-arithmetic.md", "explain course_quiz conv", "10x32x32"),
    ("02-convolution-arithmetic.md", "explain course_quiz conv", "760"),
    ("02-convolution-arithmetic.md", "paper course_mnist", "7,840"),
    ("02-convolution-arithmetic.md", "paper course_mnist", "392,200"),
    ("03-lenet.md", "inspect lenet_keras --format keras", "Total params: 81,194"),
    ("03-lenet.md", "explain lenet_keras flatten_1", "16*6*6 = 576"),
    ("03-lenet.md", "explain lenet_keras dense_1", "69,240"),
    ("03-lenet.md", "explain lenet_keras dense_2", "10,164"),
    ("04-alexnet.md", "explain alexnet conv1", "(227 - 11 + 2*0)/4 + 1 = 55"),
    ("04-alexnet.md", "explain alexnet conv1", "34974"),
    ("04-alexnet.md", "explain alexnet fc6", "9216"),
    ("04-alexnet.md", "inspect alexnet --no-crosscheck", "256x6x6"),
    ("05-vgg.md", "inspect vgg16 --format keras", "Total params: 138,357,544"),
    ("05-vgg.md", "inspect vgg16 --format keras", "102764544"),
    ("05-vgg.md", "explain vgg16 conv2d_1", "1,792"),
    ("07-training.md", "inspect basic_cnn --format keras", "Total params: 55,744"),
]

# the course's Keras tables, row by row (name, shape, params as printed), in the pages' `--format keras` outputs
KERAS_ROWS = {
    "03-lenet.md": [("conv2d_1", "(None, 30, 30, 6)", "60"), ("conv2d_2", "(None, 13, 13, 16)", "880"),
                    ("flatten_1", "(None, 576)", "0"), ("dense_1", "(None, 120)", "69240"),
                    ("dense_2", "(None, 84)", "10164"), ("dense_3", "(None, 10)", "850")],
    "05-vgg.md": [("conv2d_1", "(None, 224, 224, 64)", "1792"), ("conv2d_8", "(None, 28, 28, 512)", "1180160"),
                  ("conv2d_13", "(None, 14, 14, 512)", "2359808"), ("flatten_1", "(None, 25088)", "0"),
                  ("dense_1", "(None, 4096)", "102764544"), ("dense_2", "(None, 4096)", "16781312"),
                  ("dense_3", "(None, 1000)", "4097000")],
    "07-training.md": [("conv2d_1", "(None, 26, 26, 32)", "320"), ("conv2d_2", "(None, 11, 11, 64)", "18496"),
                       ("conv2d_3", "(None, 3, 3, 64)", "36928")],
}


def examples(page: str) -> dict[str, str]:
    """Each `$ archviz` example of the page: its command line (without `$ archviz `) -> its output."""
    found = {}
    for match in BLOCK.finditer((LESSONS / page).read_text()):
        command, _, output = match.group(1).partition("\n")
        found[command[len("$ archviz "):]] = output
    return found


def output_of(page: str, wanted: str) -> str:
    """The output of the page's example whose command, without its `# ...` marker, is `wanted`."""
    matching = [output for command, output in examples(page).items() if command.split("#")[0].strip() == wanted]
    assert len(matching) == 1, f"{page}: {len(matching)} examples run `archviz {wanted}`"
    return matching[0]


def test_every_lesson_is_there_in_the_course_order():
    assert sorted(path.name for path in LESSONS.glob("*.md")) == list(PAGES)


@pytest.mark.parametrize("page, command, figure", COURSE_FIGURES)
def test_the_course_figure_is_in_the_output(page, command, figure):
    assert figure in output_of(page, command)


@pytest.mark.parametrize("page", sorted(KERAS_ROWS))
def test_the_course_keras_table_row_by_row(page):
    table = next(output for command, output in examples(page).items() if "--format keras" in command)
    for name, shape, params in KERAS_ROWS[page]:
        assert re.search(rf"^ {re.escape(name)} \(\w+\) +{re.escape(shape)} +{params}$", table, re.M), name


@pytest.mark.parametrize("page", PAGES)
def test_a_lesson_cites_the_course_runs_commands_and_has_an_exercise(page):
    text = (LESSONS / page).read_text()
    assert "course" in text.split("\n## ", 1)[0], "the opening says what the course teaches"
    assert examples(page), "at least one `$ archviz` example, regenerated by scripts/update_docs.py"
    assert re.search(r"^## Exercises?\b", text, re.M)
    assert all(output.strip() for output in examples(page).values()), "an example without its output"


@pytest.mark.parametrize("page", PAGES)
def test_pictures_exist_and_training_is_repeatable(page):
    text = (LESSONS / page).read_text()
    for picture in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (LESSONS / picture).is_file(), picture
    for command in examples(page):
        if command.startswith(TRAINING):
            assert "--threads 1" in command, f"{command}: the thread count changes the last bits of the results"
            assert "one run's output" in command, f"{command}: its speeds differ at every run"


def test_the_lessons_digit_is_the_script_s():
    """docs/lessons/img/digit-7.png, the input of lesson 2's walkthrough, is what scripts/lesson_images.py writes."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    Image = pytest.importorskip("PIL.Image")

    from lesson_images import first_digit

    committed = np.asarray(Image.open(LESSONS / "img" / "digit-7.png"))
    assert np.array_equal(committed, np.asarray(first_digit(7)))


def test_the_training_examples_check_ignores_speeds_only():
    """scripts/run_examples.py --check masks what differs at every run (speeds, seconds, the load), not the results."""
    from run_examples import SPEEDS

    epoch = "epoch  1/10  train loss 1.7429 acc  {}%  val loss 0.7507 acc  77.7%  lr 3.00e-03  {} img/s  {} s  *"
    row = "  1=  mlp  338,610  338.2 K  10  98.88%  98.33%  98.33%      {}     {}      8.01 MB"  # train s, images/s
    assert SPEEDS.sub("", epoch.format("46.9", "2,301", "0.5")) == SPEEDS.sub("", epoch.format("46.9", "999", "1.3"))
    assert SPEEDS.sub("", row.format("2.5", "5,007")) == SPEEDS.sub("", row.format("1.5", "8,282"))
    assert SPEEDS.sub("", epoch.format("46.9", "999", "1.3")) != SPEEDS.sub("", epoch.format("47.0", "999", "1.3"))
    seeds = "   1  lenet   61,706  416.5 K  20  100.00 ± 0.00%  98.79 ± 0.43%  98.98 ± 0.32%  {}  2.43 MB"
    fast, slow = seeds.format("5.5 ± 0.8  4,626 ± 660"), seeds.format("9.9 ± 0.3   2,548 ± 83")
    assert SPEEDS.sub("", fast) == SPEEDS.sub("", slow)
