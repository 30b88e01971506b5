"""Shared helpers: write small specs into tmp_path."""

from __future__ import annotations

import textwrap

import pytest


@pytest.fixture
def write_spec(tmp_path):
    def write(text: str, name: str = "net.yaml"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/ from the current output")


@pytest.fixture
def golden(request, monkeypatch):
    """Compare text with tests/golden/NAME, or rewrite that file when pytest runs with --update-golden.

    Runs from the repository root, so spec paths in the output read `specs/...` wherever the clone is.
    """
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).parent.parent)

    def check(name: str, text: str):
        path = Path(__file__).parent / "golden" / name
        if request.config.getoption("--update-golden"):
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
        assert path.exists(), f"no golden file {path}; run pytest --update-golden"
        assert text == path.read_text(), f"output differs from {path}; if intended, run pytest --update-golden"

    return check
