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
