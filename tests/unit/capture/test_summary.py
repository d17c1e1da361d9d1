"""Session summaries (emulator.capture.summary): what the console's session list and GET /sessions show,
read from real in-memory transcripts."""

import pytest

from emulator.capture.summary import OUTCOMES, last_line, summarize
from emulator.capture.transcript import Transcript
from emulator.quirks.spec import parse
from emulator.testing import Harness

MAIL = [b"EHLO client.example\r\n", b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<b@example.test>\r\n",
        b"DATA\r\n", b"Subject: s\r\n\r\nhello\r\n.\r\n"]


def session(profile="ims55sp4", lines=(), **options):
    """A Harness session that sends C{lines} one by one after the greeting."""
    h = Harness(profile, **options)
    h.connect()
    for line in lines:
        h.send(line)
    return h


def closed(h, reason="ConnectionDone: Connection was closed cleanly."):
    """The transcript with the network edge's last event, as L{emulator.host.protocol} records it."""
    h.transcript.event(0, "closed", reason=reason)
    return h.transcript


def test_a_delivery_ended_by_quit():
    """A message accepted, then QUIT: delivered, ended by QUIT, the 221 as the last reply; no TLS, no auth."""
    h = session(lines=MAIL + [b"QUIT\r\n"])
    row = summarize(closed(h))
    assert (row["messages"], row["ended"], row["outcome"]) == (1, "QUIT", "delivered")
    assert row["last_reply"] == "221 closing connection"
    assert row["tls"] is None and row["auth"] is None and row["faults"] == []
    assert row["persona"] == "ims55sp4" and row["middlebox"] is None and row["open"] is False
    assert row["seed"] == 0  # the Harness's default, as its transcript's header records it


def test_quit_without_a_message_and_a_client_that_hangs_up():
    """QUIT without mail is "no message"; a client that goes away without QUIT "hung up" and is "dropped"."""
    quit_only = summarize(closed(session(lines=[b"HELO c\r\n", b"QUIT\r\n"])))
    assert (quit_only["ended"], quit_only["outcome"]) == ("QUIT", "no message")
    gone = summarize(closed(session(lines=[b"HELO c\r\n"])))
    assert (gone["ended"], gone["outcome"], gone["last_reply"]) == ("client hung up", "dropped", "250 OK")


def test_tls_and_auth_are_reported():
    """The handshake's version, cipher, bits and SNI, and the last AUTH attempt's user, mechanism and outcome."""
    h = session("ims55sp4-cert", tls_available=True, lines=[b"EHLO c\r\n", b"STARTTLS\r\n"])
    h.handshake(version="TLSv1.2", cipher="ECDHE-RSA-AES128-GCM-SHA256", bits=128, sni="mail.example.test")
    for line in [b"EHLO c\r\n", b"AUTH LOGIN RVhBTVBMRVx0ZXN0ZXI=\r\n", b"c2VjcmV0\r\n"]:
        h.send(line)
    row = summarize(closed(h))
    assert row["tls"] == {"version": "TLSv1.2", "cipher": "ECDHE-RSA-AES128-GCM-SHA256", "bits": 128,
                          "sni": "mail.example.test"}
    assert row["auth"] == {"user": "EXAMPLE\\tester", "mechanism": "LOGIN", "outcome": "success"}
    assert row["last_reply"].startswith("235 ")


def test_a_disconnect_fault_and_an_idle_timeout():
    """A disconnect fault that fired names itself; an idle timeout says so; both are "dropped"."""
    h = session(faults=[parse("rcpt:disconnect")], lines=MAIL[:3])
    row = summarize(closed(h))
    assert (row["faults"], row["ended"], row["outcome"]) == (["disconnect"], "fault: disconnect", "dropped")
    assert row["last_reply"].startswith("421 ")
    h = session(lines=[b"HELO c\r\n"])
    h.timeout()
    assert summarize(closed(h))["ended"] == "idle timeout"


@pytest.mark.parametrize("event, fields, ended", [
    ("tls_failed", {"reason": "handshake timeout"}, "TLS failed: handshake timeout"),
    ("internal_error", {}, "internal error"),
    ("message_not_stored", {"error": "disk full"}, "message not stored"),
    ("upstream_failed", {"reason": "refused"}, "upstream failed"),
])
def test_failures_win_over_everything_else(event, fields, ended):
    """A TLS failure, an internal error, a message not stored or an unreachable upstream make a "failed"
    session, even one that delivered a message before."""
    h = session(lines=MAIL)
    h.transcript.event(0, event, **fields)
    row = summarize(closed(h))
    assert (row["ended"], row["outcome"]) == (ended, "failed")


def test_an_open_session_and_an_aborted_one():
    """A session its store still holds open is "open"; one aborted (by a reset) is "aborted"."""
    h = session(lines=[b"HELO c\r\n"])
    assert (summarize(h.transcript, open=True)["ended"], summarize(h.transcript, open=True)["outcome"]) == (
        "open", "open")
    assert summarize(closed(h, "ConnectionAborted: Connection was aborted locally using "
                               "ITCPTransport.abortConnection."))["ended"] == "aborted"


def test_a_middlebox_session_names_both():
    """A middlebox's session is "TYPE in front of PROFILE"; its last reply is what the client got, not the
    server leg's; its messages are those the server behind it accepted."""
    t = Transcript("mb1", "ims55sp4-pix", "192.0.2.1:1", 0.0, "tcp:2525", middlebox="pix-mailguard", upstream="s1")
    t.server_leg(0, "s", b"220 mail.example.test ESMTP Server ready\r\n")
    t.sent(0, b"220 ******************************2****\r\n")
    t.server_leg(0, "s", b"500 Unrecognized command\r\n")
    row = summarize(t)
    assert row["persona"] == "pix-mailguard in front of ims55sp4-pix" and row["upstream"] == "s1"
    assert row["last_reply"] == "220 ******************************2****"
    server = session(lines=MAIL).transcript
    assert summarize(t, upstream=server)["messages"] == 1


def test_last_line_is_escaped_and_found_across_segments():
    """The last line is whole though a split reply brought it in pieces, and control bytes are escaped as in
    the arrow form; a huge record before it is not copied whole."""
    t = Transcript("s1")
    t.received(0, b"x" * 1_000_000 + b"\r\n.\r\n")
    t.sent(0, b"250-first\r\n25")
    t.sent(0, b"0 last\ttab\x01\r\n")
    assert last_line(t, "s") == "250 last\\ttab\\x01"
    assert last_line(t, "c") == "."
    assert last_line(Transcript("s2"), "s") is None


def test_a_transcript_read_back_from_its_file_summarizes_the_same():
    """The summary comes from the records alone: a .jsonl file read back gives the same one."""
    h = session(lines=MAIL + [b"QUIT\r\n"])
    t = closed(h)
    assert summarize(Transcript.from_jsonl(t.to_jsonl())) == summarize(t)


def test_outcomes_are_the_documented_ones():
    """The outcome values are the five the console filters on and the OpenAPI document lists."""
    import json
    from pathlib import Path

    document = json.loads((Path(__file__).parents[3] / "emulator" / "control" / "openapi.json").read_text())
    assert document["components"]["schemas"]["SessionSummary"]["properties"]["outcome"]["enum"] == list(OUTCOMES)
