"""The stores' file writes: whole, in order, however the kernel takes them."""

import os

import pytest

from emulator.capture import files


def test_pieces_are_written_whole_and_in_order_despite_short_writes(tmp_path, monkeypatch):
    """A writev that takes only a few bytes at a time (a full disk's edge, a
    signal) still leaves every piece in the file, in order, once."""
    real = os.writev

    def stingy(fd, buffers):
        joined = b"".join(bytes(b) for b in buffers)
        return real(fd, [joined[:3]])

    monkeypatch.setattr(files.os, "writev", stingy)
    pieces = [b"", b"alpha", b"", b"b", b"gamma-delta"] * 300  # more than one writev batch
    final = files.write_atomically(str(tmp_path), str(tmp_path), "out", pieces)
    assert open(final, "rb").read() == b"".join(pieces)


def test_a_writev_that_writes_nothing_raises(tmp_path, monkeypatch):
    """A write that makes no progress is an error, not an endless loop."""
    monkeypatch.setattr(files.os, "writev", lambda fd, buffers: 0)
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError, match="wrote nothing"):
            files.write_all(fd, [b"x"])
    finally:
        os.close(fd)
