"""Transcript tests of the sans-IO core on the ims55sp4 profile: bytes in, exact bytes out."""

import pytest

from emulator.testing.harness import Harness

BANNER = b"220 mail.example.test ESMTP Server (Microsoft Exchange Internet Mail Service 5.5.2653.13) ready\r\n"


@pytest.fixture
def h():
    harness = Harness("ims55sp4")
    harness.connect()
    return harness


def test_greeting_is_the_ims_banner():
    """The server speaks first with the Exchange 5.5 banner (KB Q173656 template)."""
    assert Harness("ims55sp4").connect() == BANNER


def test_hostname_override_changes_the_banner():
    """--hostname replaces the profile's host name in every reply."""
    assert Harness("ims55sp4", hostname="exch.corp.test").connect().startswith(b"220 exch.corp.test ESMTP")


def test_ehlo_lists_the_keywords_in_q262945_order(h):
    """EHLO answers with the host line and the IMS keywords (Q262945 order, then the post-Q195201
    XAUTH), STARTTLS absent (no certificate)."""
    assert h.send(b"EHLO client.example\r\n") == (
        b"250-mail.example.test Hello [192.0.2.10]\r\n250-XEXCH50\r\n250-HELP\r\n"
        b"250-ETRN\r\n250-DSN\r\n250-SIZE 0\r\n250-AUTH LOGIN\r\n250-AUTH=LOGIN\r\n250 XAUTH\r\n")


def test_helo_is_a_bare_ok(h):
    """IMS answered HELO with '250 OK' and no host name (KB Q295725)."""
    assert h.send(b"HELO client\r\n") == b"250 OK\r\n"


def test_a_whole_transaction(h):
    """MAIL, RCPT, DATA and the message give the IMS texts, and the message is delivered unstuffed."""
    h.send(b"HELO client\r\n")
    assert h.send(b"MAIL FROM:<a@example.org>\r\n") == b"250 OK - mail from <a@example.org>\r\n"
    assert h.send(b"RCPT TO:<b@example.test>\r\n") == b"250 OK - Recipient <b@example.test>\r\n"
    assert h.send(b"DATA\r\n") == b"354 Send data.  End with CRLF.CRLF\r\n"
    assert h.send(b"Subject: t\r\n\r\n..dot\r\n.\r\n") == b"250 OK\r\n"
    (message,) = h.messages
    assert (message.sender, message.recipients, message.data) == (
        b"a@example.org", (b"b@example.test",), b"Subject: t\r\n\r\n.dot\r\n")
    assert message.helo == b"client" and message.profile == "ims55sp4"


def test_mail_with_size_uses_the_size_text(h):
    """A MAIL with SIZE= gets IMS's 'can accomodate' text (KB Q262945, MS spelling)."""
    h.send(b"EHLO c\r\n")
    assert h.send(b"MAIL FROM:<JohnD@COMPANY1.com> SIZE=1460 RET=FULL\r\n") == (
        b"250 OK - mail from <JohnD@COMPANY1.com>; can accomodate 1460 bytes\r\n")


def test_pipelined_commands_are_answered_in_order(h):
    """Commands sent in one segment are answered one by one, in order."""
    out = h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n")
    assert out == (b"250 OK\r\n250 OK - mail from <a@b>\r\n250 OK - Recipient <c@d>\r\n"
                   b"354 Send data.  End with CRLF.CRLF\r\n250 OK\r\n221 closing connection\r\n")
    assert h.closed == "close"


def test_quit_closes_and_later_input_is_ignored(h):
    """After QUIT the server answers nothing more."""
    assert h.send(b"QUIT\r\n") == b"221 closing connection\r\n"
    assert h.send(b"NOOP\r\n") == b""


@pytest.mark.parametrize("command, reply", [
    (b"MAIL FROM:<a@b>\r\n", b"503 Bad sequence of commands\r\n"),  # before HELO
    (b"RCPT TO:<a@b>\r\n", b"503 Bad sequence of commands\r\n"),
    (b"DATA\r\n", b"503 Bad sequence of commands\r\n"),
    (b"FOO bar\r\n", b"500 Unrecognized command\r\n"),
    (b"EXPN staff\r\n", b"502 command not implemented\r\n"),
    (b"VRFY someone\r\n", b"500 Unrecognized command\r\n"),
    (b"HELO\r\n", b"501 Syntax error in parameters or arguments\r\n"),
    (b"NOOP\r\n", b"250 OK\r\n"),
    (b"RSET\r\n", b"250 OK\r\n"),
])
def test_single_command_replies(h, command, reply):
    """Each command outside a transaction gets the product's reply."""
    assert h.send(command) == reply


@pytest.mark.parametrize("argument", [b"FROM:", b"FROM a@b", b"TO:<a@b>", b"FROM:<a@b", b"", b"FROM:<a\x01b>"])
def test_mail_syntax_errors(h, argument):
    """Malformed MAIL arguments get 501 and leave no sender."""
    h.send(b"HELO c\r\n")
    assert h.send(b"MAIL " + argument + b"\r\n") == b"501 Syntax error in parameters or arguments\r\n"
    assert h.conn.envelope.sender is None


def test_lenient_mail_forms_are_accepted(h):
    """Legacy servers took a space after the colon and a path without brackets."""
    h.send(b"HELO c\r\n")
    assert h.send(b"mail from: a@b\r\n") == b"250 OK - mail from <a@b>\r\n"


def test_second_mail_is_refused(h):
    """A second MAIL in a transaction is a sequence error."""
    h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\n")
    assert h.send(b"MAIL FROM:<c@d>\r\n") == b"503 Sender already specified\r\n"


def test_rset_ends_the_transaction(h):
    """After RSET a RCPT needs a new MAIL."""
    h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\nRSET\r\n")
    assert h.send(b"RCPT TO:<c@d>\r\n") == b"503 Bad sequence of commands\r\n"


def test_null_sender_is_accepted(h):
    """The null reverse-path <> (bounces) is a valid sender."""
    h.send(b"HELO c\r\n")
    assert h.send(b"MAIL FROM:<>\r\n") == b"250 OK - mail from <>\r\n"


def test_bare_lf_commands_are_tolerated(h):
    """A command ended by a bare LF is still a command."""
    assert h.send(b"NOOP\n") == b"250 OK\r\n"


def test_over_long_command_line_is_refused_once(h):
    """A line over 512 bytes (RFC 5321 4.5.3.1.4) gets one 500 and is dropped to its end."""
    assert h.send(b"NOOP " + b"x" * 600) == b"500 Line too long\r\n"
    assert h.send(b"y" * 600) == b""
    assert h.send(b"\r\nNOOP\r\n") == b"250 OK\r\n"


def test_line_of_exactly_512_bytes_is_accepted(h):
    """512 bytes including CRLF is the limit, not over it."""
    assert h.send(b"NOOP " + b"x" * 505 + b"\r\n") == b"250 OK\r\n"


def test_disconnect_mid_data_records_an_aborted_message(h):
    """A client that goes away during DATA delivers nothing; the transcript says so."""
    h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npartial")
    h.lose()
    assert h.messages == []
    assert [r.fields for r in h.transcript.events("message_aborted")] == [{"bytes": 7}]


def test_storage_failure_answers_451(h):
    """If the message cannot be stored the client gets 451, never 250."""
    h.fail_storage = True
    out = h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n")
    assert out.endswith(b"354 Send data.  End with CRLF.CRLF\r\n451 Requested action aborted: local error in processing\r\n")


def test_recipient_limit():
    """Past the recipient limit IMS answers 452 Exceed Recipient Limit (KB Q272672)."""
    from dataclasses import replace

    from emulator.profiles import loader as profile

    p = profile.load("ims55sp4")
    h = Harness(replace(p, limits=replace(p.limits, recipients=2)))
    h.connect()
    h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<1@d>\r\nRCPT TO:<2@d>\r\n")
    assert h.send(b"RCPT TO:<3@d>\r\n") == b"452 Requested action not taken: Exceed Recipient Limit\r\n"


def test_message_size_limit():
    """A message over the size limit is refused with 552 after its end, and SIZE= above it at MAIL."""
    from dataclasses import replace

    from emulator.profiles import loader as profile

    p = profile.load("ims55sp4")
    h = Harness(replace(p, limits=replace(p.limits, message_size=10)))
    h.connect()
    h.send(b"HELO c\r\n")
    assert h.send(b"MAIL FROM:<a@b> SIZE=11\r\n").startswith(b"552 ")
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    assert h.send(b"x" * 50 + b"\r\n.\r\n").startswith(b"552 ")
    assert h.messages == []
    assert h.send(b"RCPT TO:<c@d>\r\n") == b"503 Bad sequence of commands\r\n"


def test_idle_timeout_closes_silently():
    """IMS has no timeout text in its catalogue: the connection just closes."""
    h = Harness("ims55sp4")
    h.connect()
    assert h.timeout() == b""
    assert h.closed == "close"


def test_starttls_without_certificate_is_refused(h):
    """STARTTLS to a listener with no certificate gets the product's refusal, no handshake."""
    h.send(b"EHLO c\r\n")
    assert h.send(b"STARTTLS\r\n") == b"554 Unable to initialize security subsystem\r\n"
    assert not h.tls_pending


def test_starttls_discards_pipelined_plaintext():
    """RFC 3207 section 6 / CVE-2011-0411: plaintext after STARTTLS in the same read is dropped."""
    h = Harness("ims55sp4", tls_available=True)
    h.connect()
    h.send(b"EHLO c\r\n")
    assert h.send(b"STARTTLS\r\nRSET\r\n") == b"220 Ready to start TLS\r\n"
    assert h.handshake() == b""
    assert h.transcript.events("starttls_discarded")[0].fields == {"bytes": 6}


def test_tls_resets_the_session():
    """After the handshake the server forgets the EHLO (RFC 3207 4.2): MAIL needs a new one."""
    h = Harness("ims55sp4", tls_available=True)
    h.connect()
    h.send(b"EHLO c\r\nSTARTTLS\r\n")
    h.handshake()
    assert h.send(b"MAIL FROM:<a@b>\r\n") == b"503 Bad sequence of commands\r\n"
    assert h.send(b"EHLO c\r\n").startswith(b"250-")
    assert h.send(b"STARTTLS\r\n") == b"503 Bad sequence of commands\r\n"


def test_a_known_field_the_step_does_not_fill_is_empty(tmp_path):
    """A profile may name any known field in any reply; one the step lacks renders empty, never an error."""
    from dataclasses import replace

    from emulator.profiles import loader as profile

    from emulator.core import replies

    p = profile.load("ims55sp4")
    p = replace(p, replies={**p.replies, "mail_ok": replies.parse("250 <{sender}> to <{recipient}>")})
    h = Harness(p)
    h.connect()
    h.send(b"HELO c\r\n")
    assert h.send(b"MAIL FROM:<a@b>\r\n") == b"250 <a@b> to <>\r\n"


def test_event_values_are_escaped_in_the_arrow_form():
    """A client-chosen value with a line break cannot forge a line of the human transcript."""
    from emulator.capture.transcript import Transcript

    t = Transcript("s")
    t.event(0, "auth", user="evil\r\n<- 235 ok")
    assert t.human() == "=== auth user=evil\\r\\n<- 235 ok\n"
