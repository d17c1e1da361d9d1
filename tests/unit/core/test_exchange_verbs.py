"""Exchange 2000/2003's own verbs and habits in the core, as profile data: XEXCH50's blob
(KB 843106, KB 812455), X-LINK2STATE, ATRN, KB 251581's repeated HELO, and pipelined groups
(RFC 2920) answered in order in one write.  Byte transcripts on tests/support/chunking_persona.py."""

import base64

import pytest

from emulator.core.connection import ServerConnection
from emulator.testing.harness import Harness

import chunking_persona
from hosts import Wire

BLOB = "xexch50: {blob: true}\n"
LOGIN = (b"AUTH LOGIN\r\n" + base64.b64encode(b"tester") + b"\r\n" + base64.b64encode(b"secret") + b"\r\n")


def harness(tmp_path, extra=""):
    h = Harness(chunking_persona.load(tmp_path, extra))
    h.connect()
    h.send(b"EHLO c\r\n")
    return h


def test_fixed_xexch50_is_the_default(tmp_path):
    """Without xexch50: blob the verb keeps its one fixed reply, whatever follows and whoever asks
    (the 5.x personas; the test persona gives Exchange 2000's 504 as its fixed text)."""
    h = harness(tmp_path)
    h.send(LOGIN + b"MAIL FROM:<a@b>\r\n")
    assert h.send(b"XEXCH50 2 2\r\nNOOP\r\n") == b"504 Need to authenticate first\r\n250 OK\r\n"


def test_xexch50_without_a_login_needs_authentication(tmp_path):
    """KB 843106: Exchange 2003 answers XEXCH50 before a login with 504 Need to authenticate first;
    no blob is read."""
    h = harness(tmp_path, BLOB)
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
    assert h.send(b"XEXCH50 2336 3\r\nNOOP\r\n") == b"504 Need to authenticate first\r\n250 OK\r\n"


def test_xexch50_after_a_login_reads_the_blob_in_bulk(tmp_path):
    """After a login: 354 Send binary data, a blob of exactly the announced size (CRLF.CRLF and
    command lines inside it are content), then xexch50_ok; the message goes on as usual."""
    h = harness(tmp_path, BLOB)
    h.send(LOGIN)
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
    assert h.send(b"XEXCH50 13 2\r\n") == b"354 Send binary data\r\n"
    assert h.send(b"\x00\r\n.\r\nQUIT\r\n") == b""
    assert h.send(b"x") == b"250 2.0.0 OK\r\n"
    assert h.send(b"DATA\r\nhi\r\n.\r\n") == b"354 Send data.  End with CRLF.CRLF\r\n250 OK\r\n"
    assert [m.data for m in h.messages] == [b"hi\r\n"]
    assert h.transcript.events("xexch50_blob")[0].fields == {"bytes": 13}


@pytest.mark.parametrize("command", [b"XEXCH50 x 2", b"XEXCH50 12", b"XEXCH50 1073741825 2",
                                     b"XEXCH50 12 2" + b" " * 40])
def test_xexch50_over_kb_812455_limits_or_malformed_is_refused(tmp_path, command):
    """A size that is not a number, a missing argument, a blob over 1 GB or a command over 50 bytes
    (KB 812455) gets xexch50_syntax, and no blob is read."""
    h = harness(tmp_path, BLOB)
    h.send(LOGIN + b"MAIL FROM:<a@b>\r\n")
    assert h.send(command + b"\r\nNOOP\r\n") == b"501 5.5.4 Invalid arguments\r\n250 OK\r\n"


def test_xexch50_limits_are_profile_data(tmp_path):
    """xexch50: max_blob and command change the limits (0: none)."""
    h = harness(tmp_path, "xexch50: {blob: true, max_blob: 4, command: 0}\n")
    h.send(LOGIN + b"MAIL FROM:<a@b>\r\n")
    assert h.send(b"XEXCH50 5 2\r\n") == b"501 5.5.4 Invalid arguments\r\n"
    assert h.send(b"XEXCH50 4" + b" " * 60 + b"2\r\nabcd") == b"354 Send binary data\r\n250 2.0.0 OK\r\n"


def test_xexch50_outside_a_transaction_needs_mail(tmp_path):
    """[P] Exchange sends XEXCH50 after RCPT; outside a transaction the emulator answers need_mail."""
    h = harness(tmp_path, BLOB)
    h.send(LOGIN)
    assert h.send(b"XEXCH50 2 2\r\n") == b"503 Bad sequence of commands\r\n"


def test_blob_mode_needs_its_replies(tmp_path):
    """A profile turning the blob on must give its texts: the loader names the first missing one."""
    from profile_texts import GOOD

    text = GOOD.format(name="bare").replace("commands: [HELO, QUIT]", "commands: [HELO, QUIT, XEXCH50]")
    (tmp_path / "bare.yaml").write_text(text + '  xexch50: "504 Need to authenticate first"\n  need_mail: "503 mail first"\n'
                                        'xexch50: {blob: true}\n')
    from emulator.profiles import loader
    with pytest.raises(loader.ProfileError, match="bare.yaml:replies.xexch50_ok: is required"):
        loader.load(tmp_path / "bare.yaml")


def test_x_link2state_and_atrn_answer_from_the_catalogue(tmp_path):
    """X-LINK2STATE (KB 812455) and ATRN (RFC 2645) are verbs whose replies are the profile's texts."""
    h = harness(tmp_path)
    assert h.send(b"X-LINK2STATE LAST CHUNK=abc\r\nATRN example.test\r\n") == (
        b"250 2.0.0 OK\r\n502 5.3.3 Command not implemented\r\n")


def test_a_second_helo_resets_the_transaction_by_default(tmp_path):
    """RFC 5321 4.1.4: HELO in a transaction clears it, so RCPT then needs MAIL (today's behaviour)."""
    h = harness(tmp_path)
    assert h.send(b"MAIL FROM:<a@b>\r\nHELO c\r\nRCPT TO:<c@d>\r\n") == (
        b"250 OK - mail from <a@b>\r\n250 OK\r\n503 Bad sequence of commands\r\n")


def test_helo_resets_false_keeps_the_envelope_as_kb_251581_shows(tmp_path):
    """KB 251581 (Exchange 2000, by design): helo, mail from, helo, rcpt to all succeed; the
    message keeps the sender given before the second HELO."""
    h = harness(tmp_path, "helo_resets: false\n")
    assert h.send(b"helo c\r\nmail from:Test@msft.com\r\nhelo c\r\nrcpt to:User@passport.com\r\n") == (
        b"250 OK\r\n250 OK - mail from <Test@msft.com>\r\n250 OK\r\n250 OK - Recipient <User@passport.com>\r\n")
    h.send(b"DATA\r\nhi\r\n.\r\n")
    assert (h.messages[0].sender, h.messages[0].recipients) == (b"Test@msft.com", (b"User@passport.com",))


def test_a_pipelined_group_is_answered_in_order_in_one_write(tmp_path):
    """RFC 2920: EHLO, MAIL, RCPT, two BDAT chunks with their bytes, NOOP and QUIT in one segment
    get their replies in command order, in one write before the store and one after it."""
    server = chunking_persona.load(tmp_path)
    h = Harness(server)
    conn = ServerConnection(h.server, peer=("192.0.2.10", 1025))
    conn.connect()
    wire = Wire()
    wire._run(conn.receive(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 4\r\nab\r\nBDAT 3 LAST\r\n"
                           b"cd.NOOP\r\nQUIT\r\n"))
    assert wire.calls == [
        ("write", b"250-mail.example.test Hello [192.0.2.10]\r\n250-PIPELINING\r\n250-BINARYMIME\r\n"
                  b"250-CHUNKING\r\n250-SIZE 0\r\n250-AUTH LOGIN\r\n250-X-LINK2STATE\r\n250 XEXCH50\r\n"
                  b"250 OK - mail from <a@b>\r\n250 OK - Recipient <c@d>\r\n250 2.0.0 4 bytes received\r\n"),
        ("store", b"ab\r\ncd."),
        ("write", b"250 OK\r\n250 OK\r\n221 closing connection\r\n"),
        ("close", False)]


def test_the_starttls_pipelining_guard_stays(tmp_path):
    """Commands pipelined after STARTTLS are discarded, never answered (CVE-2011-0411), with BDAT
    in the persona as without."""
    h = Harness(chunking_persona.load(tmp_path), tls_available=True)
    h.connect()
    h.send(b"EHLO c\r\n")
    assert h.send(b"STARTTLS\r\nBDAT 0 LAST\r\n") == b"220 Ready to start TLS\r\n"
    assert h.transcript.events("starttls_discarded")[0].fields == {"bytes": 13}
