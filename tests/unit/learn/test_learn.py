"""Learned personas in memory: template fields, the dialogue reader, credential
masking, inference, the profile written, the probe's script and `emulator diff`."""

from __future__ import annotations

import base64
import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import yaml

from emulator import cli
from emulator.capture.transcript import Record, Transcript
from emulator.learn import dialogue, emit, infer, probe, script
from emulator.learn.diff import compare
from emulator.learn.fields import normalize, templatize
from emulator.learn.files import read_transcript
from emulator.learn.masking import MASK, Recorder, mask_credentials
from emulator.profiles import loader as profiles
from emulator.testing.harness import Harness
from emulator.testing.middlebox import MiddleboxHarness

VALUES = script.Values("postmaster@example.test", refused="refused.example")


def transcript(*pairs, leg="") -> Transcript:
    """A transcript from (dir, bytes) pairs."""
    t = Transcript("t1", started=1_800_000_000.0)
    for i, (direction, data) in enumerate(pairs):
        t.records.append(Record(float(i), direction, data, leg=leg))
    return t


# -- fields ------------------------------------------------------------------


def test_templatize_turns_known_values_and_volatile_shapes_into_fields():
    """Host name, client address, a date and a queue id become fields; braces in the rest are doubled."""
    text = "mx.example.net Hello [192.0.2.7] {ok} Mon, 23 Nov 2026 10:00:00 +0000 queued as 4Vx9Qz"
    out = templatize(text, {"hostname": "mx.example.net", "peer_ip": "192.0.2.7"}, ("date", "queue_id"))
    assert out == "{hostname} Hello [{peer_ip}] {{ok}} {date} queued as {queue_id}"


def test_templatize_takes_whole_tokens_only():
    """A value inside a longer name or number is left alone (127.0.0.1 in 127.0.0.10)."""
    assert templatize("from 127.0.0.10 via mx.example.net.uk", {"peer_ip": "127.0.0.1", "hostname": "mx.example.net"}) \
        == "from 127.0.0.10 via mx.example.net.uk"


def test_normalize_makes_two_sessions_of_one_server_equal():
    """Dates and queue ids, the emulator's own included, normalize to the same text."""
    assert normalize("250 2.0.0 Ok: queued as 3F2A1B") == normalize("250 2.0.0 Ok: queued as 20261123T100000-000001.1")
    assert normalize("220 x ESMTP Exim 4.96 Mon, 23 Nov 2026 10:00:00 +0000") \
        == normalize("220 x ESMTP Exim 4.96 Tue, 1 Dec 2026 07:05:09 -0500")


# -- the dialogue ------------------------------------------------------------


def test_dialogue_pairs_pipelined_commands_and_skips_message_content():
    """Replies pair with pipelined commands in order; a message line that looks like a command is content."""
    t = transcript(("s", b"220 hi\r\n"), ("c", b"EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
                   ("s", b"250-x\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
                   ("c", b"AUTH LOGIN\r\n.\r\n"), ("s", b"250 queued\r\n"), ("c", b"QUIT\r\n"), ("s", b"221 bye\r\n"))
    steps = [(x.step, x.code) for x in dialogue.read(t).exchanges]
    assert steps == [("CONNECT", 220), ("EHLO", 250), ("MAIL", 250), ("RCPT", 250), ("DATA", 354),
                     ("DATA_END", 250), ("QUIT", 221)]


def test_dialogue_reads_the_server_leg_and_stops_at_a_tunnel():
    """In a middlebox's transcript the server leg is read; after STARTTLS's 220 the ciphertext is not."""
    t = transcript(("s", b"220 hi\r\n"), ("c", b"STARTTLS\r\n"), ("s", b"220 go\r\n"), leg="server")
    t.records.append(Record(3.0, "event", event="tunnel"))
    t.records.append(Record(4.0, "s", b"\x16\x03\x03\x00\x10garbage\n", leg="server"))
    session = dialogue.read(t)
    assert [x.step for x in session.exchanges] == ["CONNECT", "STARTTLS"] and session.opaque


# -- masking -----------------------------------------------------------------


def test_recorder_passes_every_byte_and_masks_credentials_in_its_transcript():
    """Through the recorder, ims55sp2 gets AUTH LOGIN's credentials unchanged on the
    wire; the masked transcript holds neither, on either leg, and notes the mechanism."""
    h = MiddleboxHarness(Recorder(), "ims55sp2")
    h.connect()
    user, password = base64.b64encode(b"tester"), base64.b64encode(b"secret")
    assert h.send(b"EHLO client.example\r\n").startswith(b"250-")
    assert h.send(b"AUTH LOGIN\r\n") == b"334 VXNlcm5hbWU6\r\n"
    assert h.send(user + b"\r\n") == b"334 UGFzc3dvcmQ6\r\n"
    assert h.send(password + b"\r\n") == b"235 LOGIN authentication successful\r\n"
    h.send(b"AUTH PLAIN " + base64.b64encode(b"\0tester\0secret") + b"\r\n")
    raw = h.transcript
    assert password in raw.client_bytes()
    masked = mask_credentials(raw)
    text = masked.to_jsonl()
    for secret in (user, password, base64.b64encode(b"\0tester\0secret")):
        assert secret.decode() not in text
    assert text.count(MASK.decode()) == 6  # three lines, both legs
    notes = [r.fields for r in masked.events("credentials_masked")]
    assert {(n["mechanism"], n["leg"], n["lines"]) for n in notes} == {
        ("LOGIN", "client", 2), ("LOGIN", "server", 2), ("PLAIN", "client", 1), ("PLAIN", "server", 1)}
    assert raw.client_bytes().count(password) == 1  # the original is untouched


def test_recorder_notes_what_it_sees_of_starttls():
    """The recorder's events: whether EHLO listed STARTTLS, and STARTTLS's reply code."""
    h = MiddleboxHarness(Recorder(), "ims55sp2")
    h.connect()
    h.send(b"EHLO client.example\r\n")
    h.send(b"STARTTLS\r\n")
    events = {r.event: r.fields for r in h.transcript.events()}
    assert events["starttls_listed"] == {"listed": True} and events["starttls_answered"] == {"code": 554}


# -- learning ----------------------------------------------------------------


def probed(tmp_path: Path, name: str, **harness) -> list[dialogue.Session]:
    paths = probe.run_in_memory(lambda: Harness(name, **harness), VALUES, tmp_path / name)
    return [dialogue.read(read_transcript(p)) for p in paths]


def test_learned_ims55sp4_names_each_reply_as_the_core_does(tmp_path):
    """From the probe's sessions with ims55sp4: the catalogue names and templates
    are the original's, SIZE becomes a limit, STARTTLS unlisted means never."""
    learned = infer.learn(probed(tmp_path, "ims55sp4"), profiles.resolved_document("exchange55"), "exchange55")
    original = profiles.resolved_document("ims55sp4")["replies"]
    for name in ("greeting", "ehlo", "mail_ok", "mail_ok_size", "rcpt_ok", "data_start", "quit", "unknown", "help",
                 "need_helo", "nested_mail"):
        want = original[name] if isinstance(original[name], list) else [original[name]]
        assert [line.replace("{version}", "5.5.2653.13") for line in want] == \
               [line.replace("{version}", "5.5.2653.13") for line in learned.replies[name]], name
    assert learned.limits == {"message_size": 0} and learned.tls == {"advertise": "never"}
    assert learned.require_helo is True and "VRFY" not in learned.commands


def test_learned_profile_checks_and_round_trips_through_show(tmp_path, capsys):
    """The profile written passes `emulator check`, marks every reply [V], and
    `emulator show` prints a profile that loads to the same replies."""
    path = tmp_path / "sp2.yaml"
    learned = infer.learn(probed(tmp_path, "ims55sp2"), profiles.resolved_document("exchange55"), "exchange55")
    path.write_text(emit.render(learned, "sp2"))
    assert cli.main(["check", str(path)]) == 0
    reply_lines = [line for line in path.read_text().splitlines() if line.startswith("  ") and '": ' not in line
                   and line.strip().split(":")[0] in learned.replies]
    assert reply_lines and all("# [V] captured from memory on " in line for line in reply_lines)
    capsys.readouterr()
    assert cli.main(["show", str(path)]) == 0
    shown = tmp_path / "shown" / "sp2.yaml"
    shown.parent.mkdir()
    shown.write_text(capsys.readouterr().out)
    assert profiles.load(shown).replies == profiles.load(path).replies
    assert profiles.load(shown).ehlo_keywords == profiles.load(path).ehlo_keywords


def test_what_no_session_showed_is_listed_and_left_to_the_base(tmp_path):
    """Replies never exercised stay the base's and the head comment names them."""
    learned = infer.learn(probed(tmp_path, "ims55sp2"), profiles.resolved_document("exchange55"), "exchange55")
    text = emit.render(learned, "sp2")
    assert "too_many_recipients" in learned.untouched["replies"] and "too_many_recipients" not in learned.replies
    assert "left to the base profile exchange55" in text and "too_many_recipients" in text.split("name:")[0]


def test_a_refused_recipient_domain_becomes_a_reply_fault_for_that_domain(tmp_path):
    """A RCPT refused for its domain (here a fault on the original) is learned as a
    `reply` quirk matching the domain, and the learned persona refuses it alike."""
    from emulator.quirks.spec import parse

    fault = parse(r"rcpt:reply=554 5.7.1 Relay access denied:match=@refused\.example")
    paths = probe.run_in_memory(lambda: Harness("ims55sp4", faults=[fault]), VALUES, tmp_path / "p")
    learned = infer.learn([dialogue.read(read_transcript(p)) for p in paths],
                          profiles.resolved_document("exchange55"), "exchange55")
    (quirk,) = learned.quirks
    assert quirk["attributes"]["reply"] == "554 5.7.1 Relay access denied"
    path = tmp_path / "refuser.yaml"
    path.write_text(emit.render(learned, "refuser"))
    h = Harness(path)
    h.connect()
    h.send(b"HELO a\r\n")
    h.send(b"MAIL FROM:<a@b>\r\n")
    assert h.send(b"RCPT TO:<x@Refused.Example>\r\n") == b"554 5.7.1 Relay access denied\r\n"
    assert h.send(b"RCPT TO:<x@fine.example>\r\n") == b"250 OK - Recipient <x@fine.example>\r\n"


def test_a_verb_answered_as_unknown_is_left_out(tmp_path):
    """ims55sp2 answers VRFY as it answers an unknown verb: the learned commands lack it.
    XAUTH, listed, has no mechanism in the rfc5321 base: left out with its keyword, and said so."""
    learned = infer.learn(probed(tmp_path, "ims55sp2"), profiles.resolved_document("rfc5321"), "rfc5321")
    assert "VRFY" not in learned.commands and "vrfy" not in learned.replies
    assert "answered as unknown, so left out: VRFY" in learned.commands_why
    assert "XAUTH" not in learned.commands and "XAUTH" not in learned.ehlo_keywords
    assert any(note.startswith("XAUTH is left out with its EHLO keywords ['XAUTH']") for note in learned.notes)


def test_replay_in_memory_gives_the_same_server_bytes(tmp_path):
    """The probe against the learned ims55sp4-cert persona gets the original's bytes
    (STARTTLS placed where the capture had it, the inside-TLS EHLO without it)."""
    real = probe.run_in_memory(lambda: Harness("ims55sp4-cert", tls_available=True), VALUES, tmp_path / "real")
    learned = infer.learn([dialogue.read(read_transcript(p)) for p in real],
                          profiles.resolved_document("exchange55"), "exchange55")
    path = tmp_path / "cert.yaml"
    path.write_text(emit.render(learned, "cert"))
    replay = probe.run_in_memory(lambda: Harness(path, tls_available=True), VALUES, tmp_path / "replay")
    assert [p.name for p in real] == [p.name for p in replay]
    assert len(real) == 5  # the TLS session ran
    for a, b in zip(real, replay):
        assert compare(read_transcript(a), read_transcript(b)) == [], a.name


def test_a_tls_keyword_in_ehlo_keywords_keeps_its_place_and_goes_inside_tls(tmp_path):
    """STARTTLS written among ehlo_keywords shows there when advertised and
    never inside TLS or when not advertised (the core's rule for learned lists)."""
    base = profiles.resolved_document("ims55sp4-cert")
    base.pop("extends", None)
    (tmp_path / "placed.yaml").write_text(yaml.dump({**base, "name": "placed", "ehlo_keywords": ["SIZE 0", "STARTTLS", "HELP"]},
                                                    Dumper=cli._Dumper))
    h = Harness(tmp_path / "placed.yaml", tls_available=True)
    h.connect()
    assert h.send(b"EHLO a\r\n").endswith(b"250-SIZE 0\r\n250-STARTTLS\r\n250 HELP\r\n")
    h.send(b"STARTTLS\r\n")
    assert h.handshake(version="TLSv1.3", cipher="x", bits=256) == b""
    assert h.send(b"EHLO a\r\n").endswith(b"250-SIZE 0\r\n250 HELP\r\n")
    plain = Harness(tmp_path / "placed.yaml", tls_available=False)
    plain.connect()
    assert plain.send(b"EHLO a\r\n").endswith(b"250-SIZE 0\r\n250 HELP\r\n")


# -- the probe's script --------------------------------------------------------


def test_the_script_is_bounded_and_its_plan_names_every_line():
    """Nine sessions at most, each ending with QUIT; the plan shows the filled-in lines."""
    assert len(script.SCRIPT) == 9 and all(s.steps[-1].line == "QUIT" for s in script.SCRIPT)
    plan = dict((s.name, lines) for s, lines in script.plan(VALUES))
    assert "RCPT TO:<probe@refused.example>    (refused domain)" in plan["message"]
    assert "RCPT TO:<postmaster@example.test>" in plan["message"]
    assert "refused" not in " ".join(dict((s.name, lines) for s, lines in
                                          script.plan(script.Values("a@b.example")))["message"])


def test_script_client_gives_up_on_a_silent_server():
    """A server that never answers: the client's timeout closes the session."""
    client = script.ScriptClient(script.SCRIPT[0], VALUES)
    assert client.connect() == []
    actions = client.timed_out()
    assert client.closed and actions[-1].__class__.__name__ == "Close"


def test_probe_dry_run_prints_the_plan_and_sends_nothing(capsys):
    """--dry-run: the plan on stderr, no connection (the port is closed), exit 0."""
    assert cli.main(["learn", "--probe", "tcp:127.0.0.1:9", "--rcpt", "me@example.test", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "session commands" in err and "XLEARNPROBE" in err and "wrote" not in err


@pytest.mark.parametrize("argv", [["learn", "--probe", "tcp:127.0.0.1:9"], ["learn", "x.jsonl"],
                                  ["learn", "--probe", "tcp:127.0.0.1:99999", "--rcpt", "a@b"]])
def test_learn_usage_errors_are_one_line_and_status_2(argv, capsys):
    """A missing --rcpt, a missing -o, a bad endpoint: one line on stderr, exit 2."""
    assert cli.main(argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_learn_names_an_unreadable_transcript(tmp_path, capsys):
    """A file that is not a transcript: one line naming it, exit 1."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    assert cli.main(["learn", str(bad), "-o", str(tmp_path / "x.yaml")]) == 1
    assert f"{bad}: not a transcript" in capsys.readouterr().err


# -- diff --------------------------------------------------------------------


def test_diff_exit_status_same_and_different(tmp_path):
    """0 for the same server bytes (dates and queue ids aside), 1 with a diff naming the line."""
    one = transcript(("s", b"220 a Mon, 23 Nov 2026 10:00:00 +0000\r\n"), ("c", b"QUIT\r\n"), ("s", b"221 bye\r\n"))
    two = transcript(("s", b"220 a Tue, 24 Nov 2026 11:00:00 +0000\r\n"), ("c", b"QUIT\r\n"), ("s", b"221 bye\r\n"))
    three = transcript(("s", b"220 a Tue, 24 Nov 2026 11:00:00 +0000\r\n"), ("c", b"QUIT\r\n"), ("s", b"221 Bye\r\n"))
    for name, t in (("one", one), ("two", two), ("three", three)):
        (tmp_path / f"{name}.jsonl").write_text(t.to_jsonl())
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["diff", str(tmp_path / "one.jsonl"), str(tmp_path / "two.jsonl")]) == 0
        assert cli.main(["diff", str(tmp_path / "one.jsonl"), str(tmp_path / "three.jsonl")]) == 1
    assert "-<- 221 bye\\r\\n" in out.getvalue() and "+<- 221 Bye\\r\\n" in out.getvalue()


def test_diff_of_folders_pairs_files_by_name(tmp_path, capsys):
    """Folders: sessions paired by file name; one missing on a side is a difference."""
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "01.jsonl").write_text(transcript(("s", b"220 x\r\n")).to_jsonl())
    assert cli.main(["diff", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    (tmp_path / "a" / "02.jsonl").write_text(json.dumps({"session": "x"}) + "\n")
    assert cli.main(["diff", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert "only in" in capsys.readouterr().out


def test_record_bad_upstream_and_unwritable_folder_are_one_line(tmp_path, capsys):
    """`emulator record`: an unknown endpoint type is a usage error (2), a folder
    that cannot be made is exit 1; one line each, nothing listens."""
    assert cli.main(["record", "--upstream", "bogus:x", "--transcripts", str(tmp_path / "r")]) == 2
    (tmp_path / "file").write_text("")
    assert cli.main(["record", "--upstream", "tcp:127.0.0.1:9", "--transcripts", str(tmp_path / "file" / "r")]) == 1
    assert [line.split(":")[0] for line in capsys.readouterr().err.strip().splitlines()] == ["emulator record",
                                                                                              "emulator"]


def test_learn_reads_a_servers_run_file_with_many_sessions(tmp_path, capsys):
    """A server appends a run's sessions to one file (--transcripts): learn takes every session in it."""
    from emulator.testing import Harness

    run = tmp_path / "run.jsonl"
    with run.open("w") as file:
        for number in (1, 2):
            h = Harness("ims55sp4", session_id=f"s{number}")
            h.connect()
            h.send(b"EHLO client.example\r\nNOOP\r\nQUIT\r\n")
            file.write(h.transcript.to_jsonl())
    assert cli.main(["learn", str(run), "-o", str(tmp_path / "learned.yaml"), "--base", "rfc5321"]) == 0
    assert "from 2 session(s)" in capsys.readouterr().err
