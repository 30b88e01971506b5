"""The documentation site builds with --strict: a broken link, a missing page or a docstring mkdocstrings cannot
render fails here, as it would fail `mkdocs build` in CI."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed: pip install -e '.[docs]' (scripts/setup.sh does)")
def test_site_builds_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about its successor, not a finding
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site/index.html").is_file()
    assert (tmp_path / "site/reference/cli/index.html").is_file()


def test_command_reference_is_the_cli_help():
    """docs/reference/cli.md is generated from the typer app; a command or option added without regenerating it
    fails here. Producing it imports neither torch nor numpy."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts/cli_reference.py"), "--check"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    probe = ("import sys; sys.path.insert(0, 'scripts'); import cli_reference; cli_reference.reference(); "
             "print(sorted({'torch', 'numpy'} & set(sys.modules)))")
    imported = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert imported.stdout.strip() == "[]", imported.stderr


def test_the_worked_op_example_passes_the_registry_wide_checks(tmp_path):
    """docs/reference/adding-an-op.md's softshrink, run as the lines it says to add to archviz/ops/activation.py,
    registers, works in a spec and passes tests/test_op_registry.py (in a fresh process: the registry here stays as
    it was)."""
    pytest.importorskip("torch")
    import re

    page = (ROOT / "docs/reference/adding-an-op.md").read_text()
    code = re.search(r"```python\n(.*?)```", page.split("## A worked example", 1)[1], re.S).group(1)
    spec = tmp_path / "shrunk.yaml"
    spec.write_text("name: shrunk\ninput: [3, 4, 4]\nlayers:\n  - softshrink: {lambd: 0.3}\n")
    run = ("import sys, pytest, archviz, archviz.ops.activation as family\n"
           f"exec({code!r}, dict(vars(family)))\n"
           f"assert archviz.inspect({str(spec)!r}).layers[0].out_shape == (3, 4, 4)\n"
           "sys.exit(pytest.main(['tests/test_op_registry.py', '-k', 'softshrink', '-p', 'no:cacheprovider']))")
    done = subprocess.run([sys.executable, "-c", run], cwd=ROOT, capture_output=True, text=True)
    # pytest's status is 0 only when tests ran (5: none collected) and all passed
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:] + (
        "\nif softshrink is a real op now, the page needs another example")
    assert " passed" in done.stdout


def test_the_python_api_session_is_what_archviz_returns(monkeypatch):
    """docs/reference/api.md's session, run as a doctest from the repo root."""
    pytest.importorskip("torch")
    import doctest
    import re

    monkeypatch.chdir(ROOT)
    page = (ROOT / "docs/reference/api.md").read_text()
    session = re.search(r"```pycon\n(.*?)```", page, re.S).group(1)
    test = doctest.DocTestParser().get_doctest(session, {}, "docs/reference/api.md", "docs/reference/api.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
