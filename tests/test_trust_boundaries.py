"""Trust boundaries (issue 15, part 1 and the CLI's messages): what a file says is data, default outputs stay in
their folder, nothing from a file reaches the terminal as control characters, every option error is one line.

Each security test plants a payload that would write a marker file if it ran, and asserts the marker is absent.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archviz.cli import app

runner = CliRunner()

UNSAFE = ("\x1b", "\x9b", "\x07", "\u202e", "\x00")

PAYLOAD = """
from pathlib import Path
Path({marker!r}).write_text("ran")
import torch.nn as nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)
    def forward(self, x):
        return self.fc(x.flatten(1))
x = Net
"""


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *words):
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("archviz: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output and "Usage:" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


# --- a checkpoint is data ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    from archviz.train.loop import train

    folder = tmp_path_factory.mktemp("trust") / "run"
    train("lenet", dataset="digits", epochs=1, seed=0, output=folder, progress=False)
    return folder


@pytest.fixture
def evil(tmp_path):
    """A module that writes a marker when imported, and the marker's path."""
    marker = tmp_path / "ran.txt"
    module = tmp_path / "evil.py"
    module.write_text(PAYLOAD.format(marker=str(marker)))
    return module, marker


def tampered(run: Path, tmp_path: Path, *, source: str, kind: str, keep_spec: bool, spec_text: str | None = None):
    """A copy of the run whose checkpoints name `source` as their model: with the stored graph spec and adapt=model
    (which made archviz load the named source before), or without the spec, as a checkpoint of an older archviz."""
    import torch

    copy = tmp_path / f"tampered-{kind}-{keep_spec}"
    shutil.copytree(run, copy)
    for name in ("best.pt", "last.pt"):
        state = torch.load(copy / name, weights_only=True)
        state["source"].update(model=source, kind=kind)
        if spec_text is not None:
            state["source"]["spec_text"] = spec_text
        if keep_spec:
            state["settings"]["adapt"] = "model"
        else:
            del state["graph"]["spec"]
        torch.save(state, copy / name)
    return copy


def test_a_new_checkpoint_stores_the_spec_of_the_graph_it_trained(lenet_run):
    import torch

    import archviz
    from archviz.spec.model import read_spec_text
    from archviz.graph.build import validate

    state = torch.load(lenet_run / "best.pt", weights_only=True)
    graph = validate(read_spec_text(state["graph"]["spec"], origin="best.pt"))
    assert archviz.inspect(graph).totals.params == state["graph"]["params"] == archviz.inspect("lenet").totals.params


@pytest.mark.parametrize("keep_spec", [True, False], ids=["graph-spec", "older-checkpoint"])
@pytest.mark.parametrize("command", [["filters"], ["activations", "--sample", "0"], ["cam", "--sample", "0"]])
def test_a_checkpoint_naming_code_never_imports_it(lenet_run, tmp_path, evil, monkeypatch, command, keep_spec):
    module, marker = evil
    monkeypatch.chdir(tmp_path)
    run_folder = tampered(lenet_run, tmp_path, source=f"{module}:Net", kind="zoo", keep_spec=keep_spec)
    result = run(command[0], run_folder, *command[1:], "-o", tmp_path / "out.png")
    assert not marker.exists(), "the checkpoint's named code ran"
    assert result.exit_code == 0, result.output  # rebuilt from the stored spec: lenet, as trained


def test_a_checkpoint_naming_an_installed_module_never_imports_it(lenet_run, tmp_path, evil, monkeypatch):
    module, marker = evil
    monkeypatch.syspath_prepend(str(module.parent))  # `evil:x` now names an importable module
    run_folder = tampered(lenet_run, tmp_path, source="evil:x", kind="code", keep_spec=False, spec_text="")
    result = run("filters", run_folder, "-o", tmp_path / "out.png")
    assert not marker.exists()
    one_line_error(result, "does not import the code a checkpoint names")


def test_probe_trains_the_spec_a_run_stores_not_the_code_its_record_names(lenet_run, tmp_path, evil):
    from dataclasses import replace

    from archviz.pretrain.probe import SOURCE_SPEC, _architecture
    from archviz.train.run_folder import read_record

    import archviz

    module, marker = evil
    run_folder = tampered(lenet_run, tmp_path, source=f"{module}:Net", kind="code", keep_spec=True)
    record = replace(read_record(run_folder), model=f"{module}:Net")
    chosen = _architecture(run_folder, record)
    assert not marker.exists()
    assert Path(chosen) == run_folder / SOURCE_SPEC
    assert archviz.inspect(chosen).totals.params == archviz.inspect("lenet").totals.params


# --- default outputs stay in their folder ------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("/abs/path/x", "abs_path_x.html"), ("../../escaped", "escaped.html"), (".", "model.html"),
    ("nul\\0byte", "nul_byte.html"), ("a/../../b", "a_.._.._b.html"),
])
def test_a_spec_name_never_chooses_where_a_report_goes(tmp_path, monkeypatch, name, expected):
    work = tmp_path / "work" / "deep"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    spec = work / "net.yaml"
    spec.write_text(f'name: "{name}"\ninput: [1, 4, 4]\nlayers: [flatten]\n')
    before = set(tmp_path.rglob("*"))
    result = run("report", spec, "--no-crosscheck")
    assert result.exit_code == 0, result.output
    written = set(tmp_path.rglob("*")) - before
    assert written == {work / "reports", work / "reports" / expected}, written
    assert not Path("/abs/path/x.html").exists()


def test_a_comparison_of_hostile_names_stays_in_reports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for index, name in enumerate(("../a", "/b")):
        (tmp_path / f"n{index}.yaml").write_text(f'name: "{name}"\ninput: [1, 4, 4]\nlayers: [flatten]\n')
    result = run("report", "n0.yaml", "n1.yaml", "--no-crosscheck")
    assert result.exit_code == 0, result.output
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*.html")] == [Path("reports/a-vs-b.html")]


def test_default_run_folders_stay_in_runs():
    from archviz.train.run import default_folder

    folder = default_folder("../../x.py:Net", "folder:../../data")
    assert folder.parent == Path("runs") and folder.name.startswith("x.py_Net-folder-")


# --- nothing from a file reaches the terminal as control characters ------------------------------------------------

HOSTILE_SPEC = r'''
name: "evil\e[2Jname\u202e"
description: "\e]0;pwned\a a description"
input: [1, 8, 8]
layers:
  - conv2d: {out_channels: 2, kernel_size: 3}
    name: conv1
    note: "\e[31mred\x9b1m note"
  - flatten
  - linear: {out_features: 3}
'''


@pytest.mark.parametrize("args", [
    ["inspect", "{spec}", "--no-crosscheck"],
    ["inspect", "{spec}", "--no-crosscheck", "-f", "keras"],
    ["inspect", "{spec}", "--no-crosscheck", "-f", "csv"],
    ["inspect", "{spec}", "--no-crosscheck", "-f", "markdown"],
    ["inspect", "{spec}", "--no-crosscheck", "-f", "json"],
    ["explain", "{spec}", "conv1"],
    ["diff", "{spec}", "lenet"],
    ["export-spec", "{spec}"],
])
def test_control_characters_from_a_spec_never_reach_the_terminal(write_spec, args):
    spec = write_spec(HOSTILE_SPEC)
    result = run(*[a.format(spec=spec) for a in args])
    assert result.exit_code == 0, result.output
    for character in UNSAFE:
        assert character not in result.output, (args, character)


def test_control_characters_from_module_class_names_never_reach_the_terminal(tmp_path):
    code = tmp_path / "net.py"
    code.write_text(
        "import torch.nn as nn\n"
        "Evil = type('Evil\\x1b[2J\\u202e', (nn.Module,), {'forward': lambda self, x: self.fc(x)})\n"
        "class Top(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.block = Evil()\n"
        "        nn.Module.__init__(self.block)\n"
        "        self.block.fc = nn.Linear(16, 2)\n"
        "    def forward(self, x):\n"
        "        return self.block(x.flatten(1))\n")
    for args in ([], ["-f", "keras"], ["-f", "markdown"]):
        result = run("inspect", f"{code}:Top", "-i", "1x4x4", "--no-crosscheck", *args)
        assert result.exit_code == 0, result.output
        assert "Evil" in result.output or args, result.output  # the group row names the class
        for character in UNSAFE:
            assert character not in result.output, (args, character)


def test_control_characters_from_an_onnx_file_never_reach_the_terminal(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("in\x1b[2J", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])
    node = helper.make_node("Relu", ["in\x1b[2J"], ["out"], name="re\x1blu\u202e", doc_string="\x1b]0;pwn\x07")
    graph = helper.make_graph([node], "g\x1b[2J", [x], [y], doc_string="graph \x1b[31mdoc")
    path = tmp_path / "evil.onnx"
    onnx.save(helper.make_model(graph, producer_name="evil\x1b[2J", doc_string="model \x1b]0;title\x07 doc"), path)
    for args in ([], ["-f", "keras"], ["-f", "markdown"]):
        result = run("inspect", path, "--no-crosscheck", *args)
        assert result.exit_code == 0, result.output
        for character in UNSAFE:
            assert character not in result.output, (args, character)


def test_control_characters_in_error_messages_are_made_visible(write_spec):
    spec = write_spec('name: x\ninput: [1, 8, 8]\nlayers:\n  - conv2d: {out_channels: 2, kernel_size: "\\e[2J"}\n')
    result = run("inspect", spec)
    one_line_error(result, "\\x1b[2J")
    assert "\x1b" not in result.stderr


def test_markdown_escapes_html_and_keeps_the_heading_on_one_line(write_spec):
    spec = write_spec('name: "<script>alert(1)</script>\\n# injected *bold*"\ninput: [1, 4, 4]\nlayers: [flatten]\n')
    result = run("inspect", spec, "--no-crosscheck", "-f", "markdown")
    assert result.exit_code == 0, result.output
    assert "<script>" not in result.output and "&lt;script&gt;" in result.output
    assert result.output.splitlines()[0] == r"### &lt;script&gt;alert(1)&lt;/script&gt; \# injected \*bold\*: input 1x4x4, batch 1"
    assert not any(line.startswith("# injected") for line in result.output.splitlines())


def test_a_markdown_layer_name_with_a_pipe_or_backtick_stays_in_its_cell():
    from archviz.render.data import markdown_code

    assert markdown_code("a|b") == r"`a\|b`"
    assert markdown_code("x`y") == "``x`y``"


# --- every user error is one line, exit 2 ----------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["inspect", "lenet", "--batch", "0"], ["--batch: 0 is not in the range"]),
    (["inspect", "lenet", "--batch", "-1"], ["--batch: -1"]),
    (["inspect", "lenet", "--batch", str(10**23)], ["--batch", "1000000000"]),
    (["inspect", "lenet", "--depth", "-1"], ["--depth"]),
    (["inspect", "lenet", "--dtype", "bogus"], ["--dtype", "bogus", "float32"]),
    (["inspect"], ["Missing argument"]),
    (["bogus-command"], ["No such command"]),
    (["train", "lenet", "--epochs", "0"], ["--epochs"]),
])
def test_an_option_error_is_one_line(args, words):
    one_line_error(run(*args), *words)


def test_a_huge_model_argument_is_one_line():
    one_line_error(run("inspect", "a" * 100_000), "100,000 characters")
    one_line_error(run("diff", "a" * 100_000, "lenet"), "100,000 characters")


def test_a_model_argument_with_a_nul_byte_is_one_line():
    import archviz

    with pytest.raises(archviz.ArchvizError, match="control character"):
        archviz.load("le\0net")


def test_a_huge_set_value_is_one_line():
    one_line_error(run("inspect", "lenet", "--set", "num_classes=" + "9" * 5000), "--set")


def test_a_set_value_is_plain_data_without_aliases():
    """PyYAML's safe_load expands aliases: a few lines of --set grew to a MemoryError."""
    levels = ", ".join(f"&l{i} [*l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}]"
                       for i in range(1, 14))
    one_line_error(run("inspect", "lenet", "--set", f"num_classes=[&l0 [1], {levels}]"), "alias")


def test_a_layer_name_outside_ascii_says_ascii(write_spec):
    spec = write_spec("name: x\ninput: [1, 4, 4]\nlayers:\n  - flatten: {}\n    name: café\n")
    one_line_error(run("inspect", spec), "ASCII letters")


def test_a_pickled_module_is_refused_without_torch_advice(tmp_path):
    import torch

    path = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    for result in (run("inspect", path), run("filters", "lenet", "--weights", path)):
        one_line_error(result, "pickled Python object", "will not unpickle", "state_dict()")
        assert "weights_only=False" not in result.stderr and "Warning" not in result.output
