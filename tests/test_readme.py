"""The README's examples are real: its spec example is a tested file, its error messages are what the CLI says,
and every op of the registry is documented."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

import archviz
from archviz.cli import app
from archviz.ops import all_ops

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_spec_example_is_the_tested_file():
    example = re.search(r"```yaml\n(name: tiny_resnet.*?)```", README, re.S).group(1)
    assert example == (ROOT / "tests/data/tiny_resnet.yaml").read_text()
    report = archviz.inspect(ROOT / "tests/data/tiny_resnet.yaml")
    assert report.layer("layer2.0.downsample.0").out_shape == (32, 16, 16)
    assert "layer1.0.downsample" not in [s.name for s in report.layers]
    assert report.layer("concat").out_shape == (8 + 32, 16, 16)


def test_the_op_entry_shown_is_the_code():
    """The entry "How it is built" shows a contributor is pixel_unshuffle's, as archviz/ops/tensor.py has it."""
    shown = re.search(r"```python\n(def _read_pixel_unshuffle.*?)```", README, re.S).group(1)
    assert shown in (ROOT / "archviz/ops/tensor.py").read_text()


def test_every_op_documents_itself():
    """`archviz ops NAME` (which the README shows) is read from the entry: a docstring, and a doc for every argument
    whose name does not say what it is."""
    from archviz.render.ops_listing import op_entry

    for op in all_ops():
        assert op.doc and op_entry(op.name).count(op.doc) == 1, op.name


def test_error_examples_match_the_cli(monkeypatch):
    monkeypatch.chdir(ROOT)
    for command, message in re.findall(r"^\$ archviz (.+)\n(archviz: error: .+)$", README, re.M):
        result = CliRunner().invoke(app, command.split())
        assert result.exit_code == 2, command
        assert result.stderr.strip() == message, command


def test_readme_and_docs_examples_are_current_output():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(ROOT / "scripts/update_docs.py"), "--check"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr + "\nrun: .venv/bin/python scripts/update_docs.py [FILES...]"
