"""An open session's records past a threshold go to a spool file: the run's
file ends the same, byte for byte, and every reader still sees every record."""

import errno
import os

import pytest

from emulator.capture import files
from emulator.capture.transcript import (SpooledTranscript, StoredTranscript, Transcript, TranscriptStore,
                                         held_bytes, read_sessions)

KIB = 1024
THRESHOLD = 8 * KIB


def run_session(store, number=1, messages=12, size=2 * KIB, check=lambda transcript: None):
    """A session of C{messages} messages of C{size} bytes through C{store};
    C{check(transcript)} runs after each message, while it is open."""
    t = Transcript(f"s{number:06d}", "ims55sp4", f"192.0.2.10:{1024 + number}", 100.0, "tcp:2525", seed=7)
    store.begin(t)
    t.received(100.1, b"EHLO c\r\n")
    t.sent(100.2, b"250 OK\r\n")
    for index in range(messages):
        t.received(100.3 + index, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        t.sent(100.3 + index, b"250 OK\r\n250 OK\r\n354 go\r\n", tls=bool(index % 2))
        t.received(100.4 + index, bytes([index % 256]) * size + b"\r\n.\r\n")
        t.event(100.4 + index, "message_accepted", name=f"m{index}", bytes=size, recipients=1)
        check(t)
    t.event(101.0 + messages, "closed", reason="done")
    store.finish(t)
    return t


def one_session_file(folder) -> bytes:
    (run,) = folder.glob("*.jsonl")
    return run.read_bytes()


def test_a_spooled_session_ends_in_the_run_file_byte_for_byte_as_unspooled(tmp_path):
    """A session that crossed the threshold many times is written exactly as
    a store that never spools writes it: header, then every record in order."""
    spooled = TranscriptStore(tmp_path / "spooled", spool_threshold=THRESHOLD)
    whole = TranscriptStore(tmp_path / "whole", spool_threshold=1 << 40)
    run_session(spooled)
    run_session(whole)
    assert one_session_file(tmp_path / "spooled") == one_session_file(tmp_path / "whole")
    (session,), notes = read_sessions(one_session_file(tmp_path / "spooled").decode("latin-1"))
    kept = spooled.get("s000001")
    assert isinstance(kept, StoredTranscript) and notes == []
    assert (kept.record_count, kept.message_count) == (len(session.records), 12) == (3 + 12 * 4, 12)
    assert kept.to_jsonl() == one_session_file(tmp_path / "whole").decode("ascii")


def test_the_spool_is_copied_alike_without_the_kernels_copies(tmp_path, monkeypatch):
    """Where neither copy_file_range nor sendfile can copy, the spool is read
    and written, with the same bytes."""
    def cannot(*args):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(files.os, "copy_file_range", cannot)
    monkeypatch.setattr(files.os, "sendfile", cannot)
    run_session(TranscriptStore(tmp_path / "spooled", spool_threshold=THRESHOLD))
    run_session(TranscriptStore(tmp_path / "whole", spool_threshold=1 << 40))
    assert one_session_file(tmp_path / "spooled") == one_session_file(tmp_path / "whole")


def test_an_open_spooled_session_shows_every_record_and_memory_holds_about_the_threshold(tmp_path):
    """While the session runs, get() and all() give every record so far, in
    order, and the counts count them all; the records left in memory hold
    at most about the threshold."""
    store = TranscriptStore(tmp_path, spool_threshold=THRESHOLD)
    seen, spooled = [], []

    def check(live):
        seen.append(held_bytes(live))
        view = store.get(live.session_id)
        (listed,) = store.all()
        spooled.append(live._spool is not None)
        assert isinstance(view, SpooledTranscript) == isinstance(listed, SpooledTranscript) == spooled[-1]
        loaded = view.records
        assert loaded[-len(live.records):] == live.records or not live.records
        assert view.record_count == len(loaded) == listed.record_count
        assert view.message_count == len(view.events("message_accepted")) == len(seen)
        assert view.human().count("=== message_accepted") == len(seen)
        assert view.session_id == live.session_id and view.peer == live.peer
        seen_bytes = b"".join(r.data for r in loaded if r.dir == "c")
        assert seen_bytes.endswith(b"\r\n.\r\n") and seen_bytes.startswith(b"EHLO c\r\n")

    run_session(store, check=check)
    # A record that crosses the threshold spills at once; 512: the session's own overhead.
    assert spooled.count(True) >= 8 and max(seen) <= THRESHOLD + 512
    assert store.get("s000001").record_count == 3 + 12 * 4


def test_spool_files_are_never_named_transcripts_and_are_gone_after_finish(tmp_path):
    """Readers that list *.jsonl see only the run file, during and after a
    spooled session; the spool's descriptor is closed when it finishes."""
    store = TranscriptStore(tmp_path, spool_threshold=THRESHOLD)
    descriptors = []

    def check(live):
        assert [p.name for p in tmp_path.iterdir()] == [os.path.basename(store.path)]
        if live._spool is not None:
            descriptors.append(live._spool.fd)

    run_session(store, check=check)
    assert descriptors and [p.name for p in tmp_path.iterdir()] == [os.path.basename(store.path)]
    with pytest.raises(OSError):
        os.fstat(descriptors[-1])


def test_a_spool_that_cannot_be_written_keeps_the_records_in_memory(tmp_path, monkeypatch):
    """A spool write that fails (a full disk) does not disturb the session:
    its records stay in memory, and it ends whole in the run file."""
    store = TranscriptStore(tmp_path / "spooled", spool_threshold=THRESHOLD)
    real, failures = os.writev, []

    def full(fd, buffers):
        if fd != store._fd:
            failures.append(fd)
            real(fd, [bytes(buffers[0])[:5]])  # a torn start, cut back off
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, buffers)

    monkeypatch.setattr(files.os, "writev", full)
    held = []
    run_session(store, check=lambda live: held.append(len(live.records)))
    monkeypatch.undo()
    run_session(TranscriptStore(tmp_path / "whole", spool_threshold=1 << 40))
    assert failures and held == sorted(held)  # never emptied
    assert one_session_file(tmp_path / "spooled") == one_session_file(tmp_path / "whole")


def test_a_spool_that_fails_later_keeps_what_it_had(tmp_path, monkeypatch):
    """Spool writes that fail after some succeeded: the records written
    stay in the spool, the rest in memory, and the session ends whole."""
    store = TranscriptStore(tmp_path / "spooled", spool_threshold=THRESHOLD)
    real, calls = os.writev, []

    def fails_from_the_second(fd, buffers):
        if fd != store._fd:
            calls.append(fd)
            if len(calls) > 1:
                raise OSError(errno.EIO, "Input/output error")
        return real(fd, buffers)

    monkeypatch.setattr(files.os, "writev", fails_from_the_second)

    def cannot_cut(fd, length):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "ftruncate", cannot_cut)  # no more tries after the first failure
    run_session(store)
    monkeypatch.undo()
    run_session(TranscriptStore(tmp_path / "whole", spool_threshold=1 << 40))
    assert len(calls) == 2
    assert one_session_file(tmp_path / "spooled") == one_session_file(tmp_path / "whole")


def test_a_failed_append_of_a_spooled_session_keeps_it_whole_in_memory(tmp_path, monkeypatch):
    """When the run file cannot take a spooled session, the file is cut back
    and the memory keeps the whole transcript, spooled records included."""
    store = TranscriptStore(tmp_path, spool_threshold=THRESHOLD)
    real = os.writev

    def run_file_full(fd, buffers):
        if fd == store._fd:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, buffers)

    monkeypatch.setattr(files.os, "writev", run_file_full)
    with pytest.raises(OSError, match="No space left"):
        run_session(store)
    monkeypatch.undo()
    kept = store.get("s000001")
    assert isinstance(kept, Transcript) and len(kept.records) == 3 + 12 * 4
    assert os.path.getsize(store.path) == 0


def test_a_session_cut_short_mid_write_reads_as_far_as_it_got(tmp_path):
    """A crash between the writes of a spooled session leaves complete lines
    (read as a shorter session) or a torn last line (skipped and noted)."""
    run_session(TranscriptStore(tmp_path, spool_threshold=THRESHOLD), number=1)
    run_session(TranscriptStore(tmp_path / "2", spool_threshold=THRESHOLD), number=2)
    first, second = one_session_file(tmp_path), one_session_file(tmp_path / "2")
    lines = second.splitlines(keepends=True)
    cut = first + b"".join(lines[:20])
    sessions, notes = read_sessions(cut.decode("latin-1"))
    assert [len(t.records) for t in sessions] == [51, 19] and notes == []
    sessions, notes = read_sessions((cut + lines[20][:30]).decode("latin-1"))
    assert [len(t.records) for t in sessions] == [51, 19] and notes == ["line 73: a torn last record was skipped"]


def test_a_transcript_without_a_store_never_spools():
    """In-memory harnesses: a Transcript on its own keeps every record."""
    t = Transcript("s1")
    for index in range(200):
        t.received(float(index), b"x" * 4096)
    assert len(t.records) == 200 and t._spool is None
