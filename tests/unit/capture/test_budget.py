"""What the stores keep in memory: a byte budget, newest first; with folders,
summaries in memory and the rest read back from disk."""

import gc
import os
from pathlib import Path
import signal
import subprocess
import sys
import tracemalloc

import pytest

from emulator.capture import files
from emulator.capture.budget import Kept
from emulator.capture.maildir import MessageStore
from emulator.capture.transcript import StoredTranscript, Transcript, TranscriptStore, read_sessions
from emulator.core.actions import Message
from sessions import session

KIB = 1024


def message(number, size=KIB):
    body = f"Message-ID: <{number}@example>\r\n\r\n".encode() + b"x" * size
    return Message(b"a@example.org", (b"b@example.test", b"c@example.test"), body, f"192.0.2.10:{1024 + number}",
                   "ims55sp4", b"client.example", False, None, f"s{number:06d}")





# -- the budget itself ------------------------------------------------------


def test_kept_forgets_the_oldest_first_to_stay_within_its_budget():
    """Entries past the budget go oldest first; what is kept is the newest,
    in arrival order, and the forgotten are counted with their bytes."""
    kept = Kept(100)
    for name, cost in [("a", 40), ("b", 40), ("c", 40), ("d", 10)]:
        kept.append(name, cost)
    assert list(kept) == ["b", "c", "d"] and (kept.used, kept.dropped, kept.dropped_bytes) == (90, 1, 40)
    kept.append("e", 60)
    assert list(kept) == ["d", "e"] and kept[-1] == "e" and len(kept) == 2
    assert (kept.used, kept.dropped, kept.dropped_bytes) == (70, 3, 120)


def test_the_newest_entry_stays_even_when_it_alone_is_over_budget():
    """A message bigger than the whole budget is still there for the test
    that just sent it; the next one replaces it."""
    kept = Kept(10)
    kept.append("small", 5)
    kept.append("huge", 1000)
    assert list(kept) == ["huge"] and kept.dropped == 1
    kept.append("next", 5)
    assert list(kept) == ["next"] and kept.used == 5


def test_clear_forgets_without_counting_drops():
    """A reset is not the budget at work: dropped counts only evictions."""
    kept = Kept(10)
    kept.append("a", 5)
    kept.clear()
    assert (list(kept), kept.used, kept.dropped) == ([], 0, 0)


def test_a_negative_budget_is_refused():
    """A budget below zero is a mistake, said so at once."""
    with pytest.raises(ValueError, match="cannot be negative"):
        Kept(-1)


# -- messages ----------------------------------------------------------------


def test_memory_only_messages_keep_the_newest_that_fit():
    """Without a Maildir whole messages are kept, as many of the newest as
    the budget holds; the rest are dropped and counted."""
    store = MessageStore(budget=10 * KIB)
    for number in range(20):
        store.deliver(message(number))
    kept = [c.message.session_id for c in store.recent]
    assert kept == [f"s{n:06d}" for n in range(20 - len(kept), 20)] and 2 < len(kept) < 10
    assert store.recent.dropped == 20 - len(kept)
    assert store.recent[-1].message.data == message(19).data and store.recent[-1].path is None


def test_maildir_messages_are_read_back_from_disk(tmp_path):
    """With a Maildir only a summary stays in memory; the envelope and the
    bytes come back from the files, also once a mail client moved the file
    to cur/; a deleted file says so."""
    store = MessageStore(tmp_path / "maildir")
    returned = store.deliver(message(1))
    (captured,) = store.recent
    assert captured.name == returned.name and captured.path == tmp_path / "maildir" / "new" / captured.name
    assert captured.message == message(1) and captured.envelope() == returned.envelope()
    assert captured.envelope()["recipients"] == ["b@example.test", "c@example.test"]
    # What is read is the file: change it on disk and the change shows.
    captured.path.write_bytes(b"edited\r\n")
    assert captured.message.data == b"edited\r\n"
    captured.path.rename(tmp_path / "maildir" / "cur" / f"{captured.name}:2,S")
    assert captured.message.data == b"edited\r\n"
    (tmp_path / "maildir" / "cur" / f"{captured.name}:2,S").unlink()
    with pytest.raises(FileNotFoundError, match=f"{captured.name} is no longer in"):
        captured.message


def test_an_envelope_log_that_changed_under_the_store_says_so(tmp_path):
    """If envelopes.jsonl was truncated or replaced, the summary does not
    guess: it raises LookupError naming the file."""
    store = MessageStore(tmp_path / "maildir")
    store.deliver(message(1))
    (tmp_path / "maildir" / "envelopes.jsonl").write_text("")
    with pytest.raises(LookupError, match="envelopes.jsonl no longer holds the envelope"):
        store.recent[0].envelope()


def test_maildir_summaries_cost_the_same_whatever_the_message_size(tmp_path):
    """Kept summaries do not grow with the messages: 100 KiB messages fill
    the budget no faster than 1 KiB ones."""
    small, big = MessageStore(tmp_path / "small", budget=64 * KIB), MessageStore(tmp_path / "big", budget=64 * KIB)
    for number in range(50):
        small.deliver(message(number))
        big.deliver(message(number, 100 * KIB))
    assert big.recent.used == small.recent.used < 64 * KIB
    assert len(big.recent) == 50 and big.recent.dropped == 0


# -- transcripts ----------------------------------------------------------------


def test_memory_only_transcripts_keep_the_newest_that_fit():
    """Without a folder whole transcripts are kept, newest last, within the budget."""
    store = TranscriptStore(budget=40 * KIB)
    for number in range(30):
        store.begin(session(number))
        store.finish(session(number))
    kept = [t.session_id for t in store.recent]
    assert kept == [f"s{n:06d}" for n in range(30 - len(kept), 30)] and 3 < len(kept) < 20
    assert store.recent.dropped == 30 - len(kept) and store.get("s000000") is None
    assert store.get("s000029").records == session(29).records


def test_transcripts_go_to_one_file_per_run_and_are_read_back(tmp_path):
    """Finished sessions are appended, whole and in order, to the run's one
    file; memory keeps their header fields and counts, and the records come
    back from the file, byte for byte."""
    store = TranscriptStore(tmp_path / "transcripts")
    open_one = session(99)
    store.begin(open_one)
    for number in range(3):
        store.finish(session(number))
    (run,) = (tmp_path / "transcripts").glob("*.jsonl")
    assert str(run) == store.path
    sessions, notes = read_sessions(run.read_text(encoding="latin-1"))
    assert [t.session_id for t in sessions] == ["s000000", "s000001", "s000002"] and notes == []
    kept = store.get("s000001")
    assert isinstance(kept, StoredTranscript)
    assert (kept.peer, kept.seed, kept.record_count, kept.message_count) == ("192.0.2.10:1025", 7, 9, 1)
    assert kept.to_jsonl() == session(1).to_jsonl() and kept.human() == session(1).human()
    assert [r.data for r in kept.records] == [r.data for r in session(1).records]
    assert [t.session_id for t in store.all()] == ["s000000", "s000001", "s000002", "s000099"]
    assert store.get("s000099") is open_one


def test_transcript_summaries_are_forgotten_oldest_first(tmp_path):
    """With a folder, the budget bounds the summaries: the oldest go first,
    the file keeps every session."""
    store = TranscriptStore(tmp_path / "t", budget=2 * KIB)
    for number in range(20):
        store.finish(session(number, 100 * KIB))
    kept = [t.session_id for t in store.recent]
    assert kept == [f"s{n:06d}" for n in range(20 - len(kept), 20)] and 1 < len(kept) < 10
    assert store.recent.dropped == 20 - len(kept)
    assert len(read_sessions(open(store.path, encoding="latin-1").read())[0]) == 20


def test_a_truncated_run_file_is_reported_not_misread(tmp_path):
    """A kept summary whose file was emptied (rotated) raises LookupError
    naming file and session, rather than returning another session."""
    store = TranscriptStore(tmp_path / "t")
    store.finish(session(1))
    os.truncate(store.path, 0)
    store.finish(session(2))  # lands at the file's new start
    with pytest.raises(LookupError, match="no longer holds session s000001"):
        store.get("s000001").records
    assert store.get("s000002").to_jsonl() == session(2).to_jsonl()


def test_two_stores_in_one_process_write_two_files(tmp_path):
    """Run files are never shared: a second store started in the same second
    by the same process gets a file of its own."""
    first, second = TranscriptStore(tmp_path), TranscriptStore(tmp_path)
    assert first.path != second.path and len(list(tmp_path.glob("*.jsonl"))) == 2
    first.close()
    second.close()


# -- crash safety of the run file ---------------------------------------------------


def test_a_failed_append_is_cut_back_off_the_file(tmp_path, monkeypatch):
    """A write that fails half-way (a full disk) raises, and leaves the file
    as it was: no torn record; the next session appends cleanly.  The
    session that could not be written stays whole in memory."""
    store = TranscriptStore(tmp_path)
    store.finish(session(1))
    real = os.writev

    def half_then_full(fd, buffers):
        real(fd, [bytes(buffers[0])[:10]])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "writev", half_then_full)
    unwritten = session(2)
    with pytest.raises(OSError, match="No space left"):
        store.finish(unwritten)
    monkeypatch.undo()
    assert store.get("s000002") is unwritten
    store.finish(session(3))
    sessions, notes = read_sessions(open(store.path, encoding="latin-1").read())
    assert [t.session_id for t in sessions] == ["s000001", "s000003"] and notes == []


def test_when_the_cut_fails_too_a_torn_record_stays_last_in_its_file(tmp_path, monkeypatch):
    """If the torn bytes cannot be cut off either, later sessions go to a new
    file: the torn record is its file's last line, which a reader skips and
    reports, keeping every finished session."""
    store = TranscriptStore(tmp_path)
    store.finish(session(1))
    first = store.path
    real = os.writev

    def half_then_fail(fd, buffers):
        real(fd, [bytes(buffers[0])[:10]])
        raise OSError(5, "Input/output error")

    def no_truncate(fd, length):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files.os, "writev", half_then_fail)
    monkeypatch.setattr(os, "ftruncate", no_truncate)
    with pytest.raises(OSError):
        store.finish(session(2))
    monkeypatch.undo()
    store.finish(session(3))
    assert store.path != first
    sessions, notes = read_sessions(open(first, encoding="latin-1").read())
    assert [t.session_id for t in sessions] == ["s000001"] and notes == ["line 11: a torn last record was skipped"]
    assert [t.session_id for t in read_sessions(open(store.path, encoding="latin-1").read())[0]] == ["s000003"]


KILLED = """
import os, signal, sys
sys.path[:0] = [{root!r}, {tests!r}]
from sessions import session
from emulator.capture.transcript import TranscriptStore
store = TranscriptStore({folder!r})
for number in range(3):
    store.finish(session(number))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_finished_session_survives_the_process_being_killed(tmp_path):
    """Once finish() returned the session is in the file: SIGKILL right
    after (no flush, no exit handlers) loses none of them."""
    root = str(Path(__file__).resolve().parents[3])
    code = KILLED.format(root=root, tests=os.path.join(root, "tests", "support"), folder=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    (run,) = tmp_path.glob("*.jsonl")
    sessions, notes = read_sessions(run.read_text(encoding="latin-1"))
    assert [t.session_id for t in sessions] == ["s000000", "s000001", "s000002"] and notes == []


# -- the estimates behind the budget ------------------------------------------------------


def held(store, add, count):
    """Bytes the store holds per kept entry after count additions, as tracemalloc sees them."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for number in range(count):
            add(number)
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - before) / len(store.recent)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", ["messages", "messages on disk", "transcripts", "transcripts on disk"])
def test_the_budget_counts_about_what_is_really_held(tmp_path, kind):
    """Each store's estimate of an entry is within 25% of the memory the
    entry really holds, so the budget bounds real bytes (an estimate far
    below would let memory grow past the option's figure)."""
    on_disk = tmp_path if kind.endswith("on disk") else None
    if kind.startswith("messages"):
        store = MessageStore(on_disk and on_disk / "maildir")
        real = held(store, lambda number: store.deliver(message(number)), 300)
    else:
        store = TranscriptStore(on_disk)
        real = held(store, lambda number: store.finish(session(number)), 300)
    estimate = store.recent.used / len(store.recent)
    assert 0.75 * real <= estimate <= 1.25 * real, (estimate, real)
