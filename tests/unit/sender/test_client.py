"""The sans-IO client core (emulator.sender.client): reply framing, message
encoding, the dialogue's rules, and its transcript (golden file)."""

from __future__ import annotations

import dataclasses

import pytest

from emulator.sender import profile as clientprofile
from emulator.core.actions import Close, Event, Send
from emulator.sender.client import ClientConnection, Handshake, Letter, ReplyReader, ServerReply, wire_body
from emulator.sender.host import converse
from emulator.testing.harness import Harness

LETTER = Letter("a@example.org", ("b@example.test",), b"Subject: t\r\n\r\nhi\r\n")
EHLO_REPLY = b"250-mail.example.test Hello\r\n250-SIZE 0\r\n250-DSN\r\n250 STARTTLS\r\n"


def sent(actions) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Send))


def client(persona="ims55sp2-sender", **kwargs) -> ClientConnection:
    c = ClientConnection(clientprofile.load(persona), LETTER, dialled="192.0.2.25", **kwargs)
    assert c.connect() == []
    return c


def test_reply_reader_joins_multiline_replies_split_anywhere():
    """A multi-line reply is one reply whatever the pieces; bare LF ends a line too."""
    data = b"250-mail.example.test Hello\r\n250-AUTH=LOGIN\n250 SIZE 0\r\n220 next\r\n"
    for cut in range(1, len(data)):
        reader = ReplyReader()
        replies = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert replies == [ServerReply(250, ("mail.example.test Hello", "AUTH=LOGIN", "SIZE 0")),
                           ServerReply(220, ("next",))]
    assert replies[0].keywords() == {"AUTH", "SIZE"}


def test_reply_reader_turns_a_line_without_code_into_a_code_0_reply():
    """A line that is not a reply (garbage, a TLS record) becomes a reply with code 0 that no step accepts."""
    (reply,) = ReplyReader().feed(b"hello there\r\n")
    assert reply.code == 0 and reply.text == "hello there"


def test_wire_body_dot_stuffs_and_makes_crlf():
    """DATA content: CRLF line ends, leading dots doubled, CRLF.CRLF at the end (RFC 5321 4.5.2)."""
    assert wire_body(b"a\n.b\r\n..c") == b"a\r\n..b\r\n...c\r\n.\r\n"
    assert wire_body(b"x\r\n") == b"x\r\n.\r\n"


@pytest.mark.parametrize("keywords, mail, rcpt", [
    (b"250-x\r\n250 SIZE 0\r\n", " SIZE={size}", ""),
    (b"250-x\r\n250-DSN\r\n250 SIZE 0\r\n", " SIZE={size} RET=FULL", " NOTIFY=FAILURE,DELAY"),
    (b"250 x\r\n", "", ""),
])
def test_mail_and_rcpt_parameters_follow_the_keywords(keywords, mail, rcpt):
    """Q262945's SIZE=n RET=FULL and NOTIFY=FAILURE,DELAY go only to a server that lists SIZE and DSN."""
    c = client()
    c.receive(b"220 hi\r\n")
    mail = mail.format(size=len(LETTER.data))
    assert sent(c.receive(keywords)) == f"MAIL FROM:<a@example.org>{mail}\r\n".encode()
    assert sent(c.receive(b"250 ok\r\n")) == f"RCPT TO:<b@example.test>{rcpt}\r\n".encode()


def test_plaintext_after_the_220_to_starttls_is_discarded():
    """Replies that came in the same read as the 220 to STARTTLS predate TLS: they are dropped,
    and the EHLO inside TLS waits for its own reply (the response-injection twin of CVE-2011-0411)."""
    persona = clientprofile.load("ims55sp2-sender")
    persona = dataclasses.replace(persona, tls=dataclasses.replace(persona.tls, check_name="none"))
    c = ClientConnection(persona, LETTER, dialled="192.0.2.25")
    c.connect()
    c.receive(b"220 hi\r\n")
    assert sent(c.receive(EHLO_REPLY)) == b"STARTTLS\r\n"
    injected = b"250-injected\r\n250 AUTH=LOGIN\r\n354 x"
    actions = c.receive(b"220 go ahead\r\n" + injected)
    assert isinstance(actions[0], Handshake)
    assert Event("starttls_plaintext_discarded", {"bytes": len(injected)}) in actions
    assert sent(c.tls_established({}, certificate=None)) == b"EHLO ims55.example.org\r\n"
    assert sent(c.receive(b"250 mail.example.test\r\n")).startswith(b"MAIL FROM:<a@example.org>")


def test_every_recipient_refused_means_quit_and_not_delivered():
    """No RCPT accepted: no DATA, QUIT, and the failure says why."""
    c = ClientConnection(clientprofile.load("ims55sp2-sender"), Letter("a@x", ("b@y", "c@y"), b"m\r\n"),
                         dialled="192.0.2.25")
    c.connect()
    c.receive(b"220 hi\r\n")
    c.receive(b"250 hello\r\n")
    c.receive(b"250 sender ok\r\n")
    assert sent(c.receive(b"550 no such user\r\n")) == b"RCPT TO:<c@y>\r\n"
    assert sent(c.receive(b"550 no such user\r\n")) == b"QUIT\r\n"
    assert isinstance(c.receive(b"221 bye\r\n")[-1], Close)
    assert c.outcome.failure == "rejected" and c.outcome.error == "no recipient was accepted"


def test_a_refused_greeting_is_not_delivered():
    """A 554 greeting: QUIT at once."""
    c = client()
    assert sent(c.receive(b"554 go away\r\n")) == b"QUIT\r\n"
    assert c.outcome.failure == "rejected" and "554 go away" in c.outcome.error


def test_timeout_and_lost_connection_are_failures():
    """The host's timeout closes the session; a connection lost first is 'closed'."""
    c = client()
    assert isinstance(c.timed_out()[-1], Close) and c.outcome.failure == "timeout"
    c = client()
    c.receive(b"220 hi\r\n")
    c.connection_lost()
    assert c.closed and c.outcome.failure == "closed"


def test_a_reply_split_byte_by_byte_gives_the_same_session():
    """Chunking does not matter: the same session byte by byte as in whole replies."""
    whole = converse("ims55sp2-sender", Harness("ims55sp2"))
    persona = clientprofile.load("ims55sp2-sender")
    harness = Harness("ims55sp2")
    c = ClientConnection(persona, whole_letter(persona), dialled="192.0.2.25")
    c.connect()
    pending = harness.connect()
    for _ in range(10_000):
        if c.closed:
            break
        if not pending:
            pytest.fail("the client waits for a reply that never comes")
        byte, pending = pending[:1], pending[1:]
        for action in c.receive(byte):
            if isinstance(action, Send):
                pending += harness.send(action.data)
    assert c.outcome.delivered and harness.messages[0].data == whole_letter(persona).data
    assert whole.delivered


def whole_letter(persona):
    from emulator.sender.host import DEFAULT_RECIPIENT, DEFAULT_SENDER, default_message

    return Letter(DEFAULT_SENDER, (DEFAULT_RECIPIENT,), default_message(persona, DEFAULT_SENDER, [DEFAULT_RECIPIENT]))


def test_the_message_arrives_exactly(tmp_path):
    """What the server stores is the message as given, line ends and leading dots included."""
    harness = Harness("ims55sp4")
    body = b"Subject: dots\r\n\r\n.one\r\n..two\r\nlast\r\n"
    result = converse("ims55sp2-sender", harness, message=body, recipients=["x@example.test", "y@example.test"])
    assert result.delivered and harness.messages[0].data == body
    assert harness.messages[0].recipients == (b"x@example.test", b"y@example.test")
    assert "-> ..one" in result.transcript.human()


def test_golden_session_ims55sp2_sender_against_ims55sp4(golden):
    """The whole client-side transcript of a plain 5.5 delivery, as emulator send prints it."""
    golden("senders/ims55sp2-sender--ims55sp4", converse("ims55sp2-sender", Harness("ims55sp4")).human())
