"""Shared test helpers: golden transcripts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Example counts live here, not in the tests, so that `make fuzz` (the
# "fuzz" profile) really runs the same properties for long; CI is reproducible.
settings.register_profile("default", max_examples=200)
settings.register_profile("ci", max_examples=200, derandomize=True)
settings.register_profile("fuzz", max_examples=1_000_000, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "default")

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
