"""The documentation site: it builds with --strict (a broken link, a page missing from the nav or a docstring
mkdocstrings cannot render fails here), its command reference is the CLI's help, and the examples update_docs.py
cannot rerun (an op entry, a Python session, abridged JSON) are run or held to a fresh run here."""

from __future__ import annotations

import importlib.util
import json
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


def shown_apart_from(shown, real, path="$") -> list[str]:
    """Where an abridged JSON example departs from the real output: a dict shows some of the real keys with their
    values; a list with "..." shows some of the real items, in their order; a list without it shows them all."""
    if isinstance(shown, dict):
        if not isinstance(real, dict):
            return [path]
        return [gap for key, value in shown.items()
                for gap in (shown_apart_from(value, real[key], f"{path}.{key}") if key in real else [f"{path}.{key}"])]
    if not isinstance(shown, list):
        return [] if shown == real else [f"{path}: {shown!r}, really {real!r}"]
    if not isinstance(real, list) or ("..." not in shown and len(shown) != len(real)):
        return [f"{path}: not the real list"]
    if "..." not in shown:
        return [gap for i, item in enumerate(shown) for gap in shown_apart_from(item, real[i], f"{path}[{i}]")]
    start = 0
    for item in (item for item in shown if item != "..."):
        found = next((j for j in range(start, len(real)) if not shown_apart_from(item, real[j])), None)
        if found is None:
            return [f"{path}: {json.dumps(item)[:300]} is none of the real items (in this order)"]
        start = found + 1
    return []


def test_abridged_json_examples_are_parts_of_the_real_output(monkeypatch):
    """A `--format json ... # abridged` example is kept as written (update_docs.py cannot cut JSON), so what it shows
    is held to a fresh run here."""
    pytest.importorskip("torch")
    import re
    import shlex

    pattern = re.compile(r"```\n\$ archviz ([^\n]*--format json[^\n]*)# abridged\n(.*?)```", re.S)
    examples = [found for page in sorted((ROOT / "docs").rglob("*.md")) for found in pattern.findall(page.read_text())]
    assert examples, "docs/reference/formats.md shows the JSON output"
    for command, shown in examples:
        done = subprocess.run([sys.executable, "-m", "archviz.cli", *shlex.split(command)], cwd=ROOT,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert shown_apart_from(json.loads(shown), json.loads(done.stdout)) == [], command
