"""The examples of the README and the docs pages are real: the spec example is a tested file, the error messages are
what the CLI says, the op entry shown is the code, and every op of the registry documents itself."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

import archviz
from archviz.cli import app
from archviz.ops import all_ops

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"


def test_spec_example_is_the_tested_file():
    page = (DOCS / "reference/spec-language.md").read_text()
    example = re.search(r"```yaml\n(name: tiny_resnet.*?)```", page, re.S).group(1)
    assert example == (ROOT / "tests/data/tiny_resnet.yaml").read_text()
    report = archviz.inspect(ROOT / "tests/data/tiny_resnet.yaml")
    assert report.layer("layer2.0.downsample.0").out_shape == (32, 16, 16)
    assert "layer1.0.downsample" not in [s.name for s in report.layers]
    assert report.layer("concat").out_shape == (8 + 32, 16, 16)


def test_the_op_entry_shown_is_the_code():
    """The entry docs/reference/adding-an-op.md shows a contributor is pixel_unshuffle's, as archviz/ops/tensor.py has
    it."""
    page = (DOCS / "reference/adding-an-op.md").read_text()
    shown = re.search(r"```python\n(def _read_pixel_unshuffle.*?)```", page, re.S).group(1)
    assert shown in (ROOT / "archviz/ops/tensor.py").read_text()


def test_every_op_documents_itself():
    """`archviz ops NAME` (shown in docs/reference/spec-language.md) is read from the entry: a docstring, and a doc
    for every argument whose name does not say what it is."""
    from archviz.render.ops_listing import op_entry

    for op in all_ops():
        assert op.doc and op_entry(op.name).count(op.doc) == 1, op.name


def test_error_examples_match_the_cli(monkeypatch):
    monkeypatch.chdir(ROOT)
    pages = [README, *(page.read_text() for page in sorted(DOCS.rglob("*.md")))]
    examples = [found for text in pages for found in re.findall(r"^\$ archviz (.+)\n(archviz: error: .+)$", text, re.M)]
    assert len(examples) >= 7  # docs/reference/spec-language.md's errors at least
    for command, message in examples:
        result = CliRunner().invoke(app, command.split())
        assert result.exit_code == 2, command
        assert result.stderr.strip() == message, command


def test_readme_and_docs_examples_are_current_output():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(ROOT / "scripts/update_docs.py"), "--check"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr + "\nrun: .venv/bin/python scripts/update_docs.py [FILES...]"
