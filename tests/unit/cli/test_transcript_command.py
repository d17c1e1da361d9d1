"""`emulator transcript` over many sessions: files, folders, standard input,
a listing line per session, chosen sessions in arrow form, a torn last
record, and --follow.  Each runs the real entry point in a subprocess."""

import subprocess
import sys
import time

import pytest

from emulator.testing import Harness


def emulator(*argv, stdin: str | None = None, cwd=None):
    """Run `python -m emulator.cli ARGV`; return (status, stdout, stderr)."""
    result = subprocess.run([sys.executable, "-m", "emulator.cli", *argv], input=stdin, capture_output=True,
                            text=True, cwd=cwd, timeout=60)
    return result.returncode, result.stdout, result.stderr


def session(session_id: str, profile: str = "ims55sp4", mail: bool = True) -> str:
    """One in-memory session's JSON lines: a delivery (or a bare EHLO/QUIT)."""
    h = Harness(profile, session_id=session_id)
    h.connect()
    h.send(b"EHLO client.example\r\n")
    if mail:
        h.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n")
        h.send(b"Subject: hi\r\n\r\nhello\r\n.\r\n")
    h.send(b"QUIT\r\n")
    return h.transcript.to_jsonl()


@pytest.fixture
def folder(tmp_path):
    """A server's transcripts folder with three sessions (one per file, as a server writes them)."""
    out = tmp_path / "transcripts"
    out.mkdir()
    for number, profile in ((1, "ims55sp4"), (2, "ims55sp2"), (3, "ims55sp4")):
        (out / f"20261123T100000-00000{number}.jsonl").write_text(
            session(f"20261123T100000-00000{number}", profile, mail=number != 2))
    return out


def test_one_file_prints_its_session_in_arrow_form(folder):
    """A single session prints as before: its header line, then the arrow form."""
    status, out, err = emulator("transcript", str(folder / "20261123T100000-000001.jsonl"))
    assert (status, err) == (0, "")
    assert out.startswith("=== session 20261123T100000-000001 profile ims55sp4 peer 192.0.2.10:1025 seed 0\n"
                          "<- 220 ")
    assert "-> MAIL FROM:<a@example.org>\n" in out


def test_a_folder_lists_one_line_per_session(folder):
    """A folder (the Quick start's var/transcripts) lists every session: a head line, then one line each,
    with persona, peer, messages and the last reply."""
    status, out, err = emulator("transcript", str(folder))
    assert (status, err) == (0, "")
    head, *lines = out.splitlines()
    assert head.split("  ")[0] == "started (UTC)" and "last reply" in head and head.endswith("ended")
    assert [line.split()[2] for line in lines] == ["20261123T100000-000001", "20261123T100000-000002",
                                                   "20261123T100000-000003"]
    assert [line.split()[3] for line in lines] == ["ims55sp4", "ims55sp2", "ims55sp4"]
    first = lines[0].split()
    assert first[4] == "192.0.2.10:1025" and first[7] == "1"  # TLS -, auth -, one message
    assert "221 " in lines[0]  # the last reply is QUIT's
    assert lines[1].split()[7] == "0"


def test_many_files_as_the_shell_expands_them(folder):
    """`emulator transcript var/transcripts/*.jsonl` (the Quick start) takes any number of files."""
    files = sorted(str(p) for p in folder.glob("*.jsonl"))
    status, out, err = emulator("transcript", *files)
    assert (status, err) == (0, "")
    assert len(out.splitlines()) == 1 + 3


def test_session_option_prints_chosen_sessions_in_arrow_form(folder):
    """--session ID (or the start of one) prints that session in full; an unknown one is one line, exit 1."""
    status, out, _ = emulator("transcript", str(folder), "--session", "20261123T100000-000002")
    assert status == 0
    assert out.startswith("=== session 20261123T100000-000002 profile ims55sp2 ")
    assert "=== session 20261123T100000-000001" not in out
    status, out, err = emulator("transcript", str(folder), "--session", "nosuch")
    assert (status, out) == (1, "")
    assert err == f"emulator transcript: no session 'nosuch' in {folder}\n"


def test_standard_input_and_full(folder):
    """`-` reads standard input, which may hold several sessions one after another; --full prints all."""
    text = "".join(p.read_text() for p in sorted(folder.glob("*.jsonl")))
    status, out, _ = emulator("transcript", "-", "--full", stdin=text)
    assert status == 0
    assert out.count("=== session ") == 3


def test_a_torn_last_record_is_skipped_and_reported(folder):
    """A crash while a record was written leaves a torn last line: the sessions before it stand, and
    stderr says what was skipped."""
    text = (folder / "20261123T100000-000001.jsonl").read_text() + '{"t": 0.5, "dir": "c", "tl'
    status, out, err = emulator("transcript", "-", "--list", stdin=text)
    assert status == 0
    assert len(out.splitlines()) == 2
    assert err == "emulator transcript: (stdin): line 15: a torn last record was skipped\n"


@pytest.mark.parametrize("content, message", [
    ("name: ims55sp4\n", "line 1: not a transcript record (not JSON)"),
    ('{"t": 0, "dir": "c", "tls": false, "data": "x"}\n', "line 1: a record before any session header"),
    ('[1, 2]\n', "line 1: not a transcript record (not a JSON object)"),
])
def test_what_is_not_a_transcript_is_one_line(tmp_path, content, message):
    """A YAML profile or other JSON given by mistake is one line naming the file and line, exit 1."""
    path = tmp_path / "some.yaml"
    path.write_text(content)
    status, out, err = emulator("transcript", str(path))
    assert (status, out) == (1, "")
    assert err == f"emulator transcript: {path}: {message}\n"


def test_a_missing_path_is_one_line(tmp_path):
    """A path that does not exist is named, in the user's words."""
    status, out, err = emulator("transcript", str(tmp_path / "nope.jsonl"))
    assert (status, out) == (1, "")
    assert err == f"emulator transcript: {tmp_path / 'nope.jsonl'}: no such file or folder\n"


def test_follow_prints_sessions_as_they_are_appended(tmp_path):
    """--follow lists each session a running server appends to its run's file from now on (not those
    already there), and those of a new run's file, as they appear; it stops after --seconds."""
    folder = tmp_path / "t"
    folder.mkdir()
    run = folder / "20261123T100000Z-100.jsonl"
    run.write_text(session("old"))
    proc = subprocess.Popen([sys.executable, "-m", "emulator.cli", "transcript", str(folder), "--follow",
                             "--seconds", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        head = proc.stdout.readline()
        assert head.startswith("started (UTC)")
        with run.open("a") as file:  # as the store appends: one whole session at a time
            file.write(session("20261123T100000-000009"))
        assert proc.stdout.readline().split()[2] == "20261123T100000-000009"
        (folder / "20261123T110000Z-200.jsonl").write_text(session("20261123T110000-000001"))
        assert proc.stdout.readline().split()[2] == "20261123T110000-000001"
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def test_follow_stops_after_its_seconds(tmp_path):
    """--follow --seconds S ends by itself with status 0 (a bounded wait, for scripts)."""
    started = time.monotonic()
    status, out, err = emulator("transcript", str(tmp_path), "--follow", "--seconds", "0.5")
    assert (status, err) == (0, "")
    assert out.startswith("started (UTC)") and time.monotonic() - started < 30


def test_follow_needs_one_folder(tmp_path):
    """--follow on a file is a one-line error."""
    path = tmp_path / "x.jsonl"
    path.write_text(session("x"))
    status, _, err = emulator("transcript", str(path), "--follow", "--seconds", "1")
    assert status == 1
    assert err == "emulator transcript: --follow takes one folder (a server's --transcripts)\n"


def test_an_event_that_names_a_session_is_no_header(tmp_path):
    """Only a row without a time begins a session: an event with a "session" field (the learn probe writes
    one) stays a record of the session it is in."""
    from emulator.capture.transcript import read_sessions

    text = session("s1").replace('\n', '\n{"t": 0.0, "event": "probe", "session": "helo"}\n', 1)
    (found,), notes = read_sessions(text)
    assert notes == [] and found.session_id == "s1"
    assert [r.fields for r in found.events("probe")] == [{"session": "helo"}]


def test_follow_holds_back_a_session_until_it_is_whole():
    """--follow prints what a run's file gained: whole lines only, and while the file still grows,
    not its last session, which a store may still be writing (a session that spooled is appended in
    several writes: header, spooled records, the rest); once the next header follows it, or the
    file has stopped growing for one look, it is printed whole."""
    from emulator.cli import _ready

    first, second = session("s1").encode(), session("s2").encode()
    half = second[:second.index(b"\n", second.index(b"\n") + 1) + 1]  # its header and one record
    assert _ready(first + half, growing=True) == first
    assert _ready(half, growing=True) == b""
    assert _ready(first + second, growing=False) == first + second
    assert _ready(first + second[:-3], growing=False) == first + second[:second.rindex(b"\n", 0, len(second) - 3) + 1]
