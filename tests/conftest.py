"""Shared test helpers: golden transcripts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def golden():
    """Compare text with C{tests/golden/<name>.txt} byte for byte.

    Set UPDATE_GOLDEN=1 to (re)write the files after a deliberate change, and
    review the diff before committing it."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / f"{name}.txt"
        if os.environ.get("UPDATE_GOLDEN"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))
        assert path.is_file(), f"no golden file {path}; run with UPDATE_GOLDEN=1 to create it"
        assert text == path.read_bytes().decode("utf-8")

    return check
