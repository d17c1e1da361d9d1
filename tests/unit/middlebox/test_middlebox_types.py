"""The PIX NOOP variant and the ASA's inspect esmtp, sans-IO: both legs as
exact bytes, the drops at the default map's limits, and the registry."""

import pytest

from emulator import middlebox
from emulator.middlebox import build
from emulator.profiles.loader import SectionError
from emulator.testing.harness import Harness
from emulator.testing.middlebox import MiddleboxHarness

PIX_BANNER = b"220 " + b"*" * 77 + b"2" + b"*" * 13 + b"\r\n"  # ims55sp4's banner, masked
MESSAGE = b"Subject: t\r\n\r\nhello\r\n.\r\n"


def legs(h):
    """(client leg, server leg): every byte each side sent, in order."""
    client = b"".join(r.data for r in h.transcript.records if not r.leg and r.dir == "c")
    server = b"".join(r.data for r in h.transcript.records if r.leg and r.dir == "c")
    return client, server


def replies(h):
    """Every byte the client got."""
    return b"".join(r.data for r in h.transcript.records if not r.leg and r.dir == "s")


# -- pix-mailguard-noop ------------------------------------------------------


def test_noop_variant_session_byte_for_byte():
    """PIX 5.1+: EHLO, STARTTLS and AUTH reach the server as NOOP padded to
    their length and are answered the server's one-line 250 OK (no
    extensions; cisco-nsp 2004, MS KB 320027 "or an OK response").  The
    server never saw a HELO, so the client's MAIL gets the 5.5 IMS's 503;
    after a HELO the transaction and QUIT pass unchanged."""
    h = MiddleboxHarness("pix-mailguard-noop", "ims55sp4-cert", tls_available=True)
    assert h.connect() == PIX_BANNER
    sent = [b"EHLO client.example\r\n", b"STARTTLS\r\n", b"AUTH LOGIN\r\n", b"MAIL FROM:<a@b>\r\n",
            b"HELO client.example\r\n", b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<c@d>\r\n", b"DATA\r\n", MESSAGE,
            b"QUIT\r\n"]
    got = [h.send(segment) for segment in sent]
    assert got == [b"250 OK\r\n", b"250 OK\r\n", b"250 OK\r\n", b"503 Bad sequence of commands\r\n", b"250 OK\r\n",
                   b"250 OK - mail from <a@b>\r\n", b"250 OK - Recipient <c@d>\r\n",
                   b"354 Send data.  End with CRLF.CRLF\r\n", b"250 OK\r\n", b"221 closing connection\r\n"]
    client, server = legs(h)
    assert client == b"".join(sent)
    assert server == (b"NOOP               \r\nNOOP    \r\nNOOP      \r\n" + b"".join(sent[3:]))
    assert len(server) == len(client)  # "Packet lengths are never changed"
    assert [e.fields["verb"] for e in h.transcript.events("command_noop")] == ["EHLO", "STARTTLS", "AUTH"]
    assert [m.data for m in h.messages] == [b"Subject: t\r\n\r\nhello\r\n"]


def test_noop_variant_human_transcript(golden):
    """The human form of the session above, both legs interleaved."""
    h = MiddleboxHarness("pix-mailguard-noop", "ims55sp4")
    h.connect()
    for segment in [b"EHLO client.example\r\n", b"STARTTLS\r\n", b"HELO client.example\r\n", b"QUIT\r\n"]:
        h.send(segment)
    golden("middlebox/pix-mailguard-noop-ims55sp4", h.human())


def test_noop_variant_short_verb_becomes_a_whole_noop():
    """A line shorter than NOOP grows to it [P]; an empty line passes."""
    h = MiddleboxHarness("pix-mailguard-noop", "ims55sp4")
    h.connect()
    assert h.send(b"XY\r\n") == b"250 OK\r\n"
    assert legs(h)[1] == b"NOOP\r\n"


def test_noop_variant_keeps_the_dot_crlf_bug_off_by_default_and_switchable():
    """CSCds90792 was fixed in later releases: by default a split CRLF.CRLF
    passes; dotcrlf_bug: true drops it as pix-mailguard does."""
    for bug, answer in ((False, b"250 OK\r\n"), (True, b"")):
        h = MiddleboxHarness(build({"type": "pix-mailguard-noop", "attributes": {"dotcrlf_bug": bug}}), "ims55sp4")
        h.connect()
        h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        h.send(b"hello\r\n")
        assert h.send(b".\r\n") == answer


# -- asa-esmtp ---------------------------------------------------------------

SP4_CERT_EHLO = b"EHLO client.example\r\n"


def asa(**attributes):
    return build({"type": "asa-esmtp", "attributes": attributes})


def test_asa_session_byte_for_byte():
    """Banner masked, EHLO passes; in its reply the keywords the ASA names
    (ETRN, DSN, SIZE) pass, the others are X'd in place and STARTTLS is
    removed (no allow-tls); XEXCH50 is X'd on the way in and refused."""
    h = MiddleboxHarness("asa-esmtp", "ims55sp4-cert", tls_available=True)
    assert h.connect() == PIX_BANNER
    assert h.send(SP4_CERT_EHLO) == (
        b"250-mail.example.test Hello [192.0.2.10]\r\n250-XXXXXXX\r\n250-XXXX\r\n250-ETRN\r\n250-DSN\r\n"
        b"250-SIZE 0\r\n250-XXXXXXXXXX\r\n250-XXXXXXXXXX\r\n250 XXXXX\r\n")
    assert h.send(b"XEXCH50 10 2\r\n") == b"500 Unrecognized command\r\n"
    h.send(b"VRFY postmaster\r\n")  # one of the fifteen: passes as sent
    client, server = legs(h)
    assert server == SP4_CERT_EHLO + b"XXXXXXX 10 2\r\nVRFY postmaster\r\n"
    hidden = [(e.fields["keyword"], e.fields["how"]) for e in h.transcript.events("ehlo_keyword_hidden")]
    assert ("STARTTLS", "remove") in hidden and ("XEXCH50", "mask") in hidden


def test_asa_with_allow_tls_and_no_masking_passes_the_ehlo_reply():
    """allow_tls and mask_ehlo_others off: the server's reply as it is."""
    plain = Harness("ims55sp4-cert", peer=("192.0.2.10", 1025), tls_available=True)
    plain.connect()
    plain_reply = plain.send(SP4_CERT_EHLO)
    h = MiddleboxHarness(asa(allow_tls=True, mask_ehlo_others=False), "ims55sp4-cert", tls_available=True)
    h.connect()
    assert h.send(SP4_CERT_EHLO) == plain_reply


def _transaction(h, recipients=1, sender=b"a@b"):
    h.connect()
    h.send(b"HELO c\r\n")
    h.send(b"MAIL FROM:<" + sender + b">\r\n")
    return [h.send(b"RCPT TO:<r%d@d>\r\n" % i) for i in range(recipients)]


def test_asa_drops_the_connection_at_the_101st_recipient():
    """100 recipients pass; the 101st is not passed and both connections
    close (match cmd RCPT count gt 100 drop-connection)."""
    h = MiddleboxHarness("asa-esmtp", "ims55sp4")
    answers = _transaction(h, 101)
    assert answers[99] == b"250 OK - Recipient <r99@d>\r\n" and answers[100] == b""
    assert h.closed and h.server.conn.phase.value == "closed"
    assert b"r100@d" not in legs(h)[1]
    (dropped,) = h.transcript.events("connection_dropped")
    assert dropped.fields == {"reason": "RCPT count", "count": 101, "limit": 100}


def test_asa_counts_recipients_per_transaction():
    """RSET and a new MAIL start the count again [P]."""
    h = MiddleboxHarness("asa-esmtp", "ims55sp4")
    _transaction(h, 60)
    h.send(b"RSET\r\n")
    h.send(b"MAIL FROM:<a@b>\r\n")
    assert h.send(b"RCPT TO:<x@d>\r\n" * 60).count(b"250 OK - Recipient") == 60
    assert not h.closed


@pytest.mark.parametrize("length, dropped", [(512, False), (513, True)])
def test_asa_command_line_limit_counts_the_crlf(length, dropped):
    """A 512-byte command line (CRLF included, RFC 5321's maximum) passes; a
    513-byte one drops the connection (match cmd line length gt 512)."""
    h = MiddleboxHarness("asa-esmtp", "ims55sp4")
    h.connect()
    line = b"HELO " + b"c" * (length - 7) + b"\r\n"
    assert len(line) == length
    answer = h.send(line)
    assert h.closed is dropped and (answer == b"") is dropped
    assert (legs(h)[1] == b"") is dropped


@pytest.mark.parametrize("length, dropped", [(320, False), (321, True)])
def test_asa_sender_address_limit(length, dropped):
    """A sender address over 320 bytes drops the connection."""
    h = MiddleboxHarness("asa-esmtp", "ims55sp4")
    sender = b"a" * (length - 2) + b"@b"
    _transaction(h, 0, sender=sender)
    assert h.closed is dropped


def _in_data(box="asa-esmtp"):
    h = MiddleboxHarness(box, "ims55sp4")
    _transaction(h, 1)
    assert h.send(b"DATA\r\n").startswith(b"354 ")
    return h


@pytest.mark.parametrize("length, dropped", [(998, False), (999, True)])
def test_asa_header_line_limit(length, dropped):
    """A 998-byte header line (CRLF not counted) passes; 999 bytes drops the
    connection and the server never sees the end of the message."""
    h = _in_data()
    header = b"X-Long: " + b"h" * (length - 8) + b"\r\n"
    answer = h.send(header + b"\r\nbody\r\n.\r\n")
    assert h.closed is dropped
    assert answer == (b"" if dropped else b"250 OK\r\n")
    assert len(h.messages) == (0 if dropped else 1)


def test_asa_header_line_split_over_segments_is_measured_whole():
    """A long header line arriving in pieces is judged when its line end comes."""
    h = _in_data()
    assert h.send(b"X-Long: " + b"h" * 600) == b""
    assert h.send(b"h" * 600) == b"" and not h.closed
    h.send(b"\r\n\r\nbody\r\n.\r\n")
    assert h.closed and h.messages == []


def test_asa_body_line_over_998_is_only_logged():
    """match body line length gt 998 log: the line passes, and the server's
    own answer (the IMS's line limit) reaches the client."""
    h = _in_data()
    body = b"Subject: t\r\n\r\n" + b"b" * 999 + b"\r\n.\r\n"
    assert h.send(body) == b"500 Line too long\r\n"
    assert not h.closed and legs(h)[1].endswith(body)
    assert [e.fields for e in h.transcript.events("body_line_long")] == [{"bytes": 999, "limit": 998}]


def test_asa_limits_of_zero_switch_the_drops_off():
    """Each limit at 0 is off: 150 recipients and a 999-byte header line
    pass (the server answers the line itself)."""
    h = MiddleboxHarness(asa(max_recipients=0, max_header_line=0), "ims55sp4")
    _transaction(h, 150)
    h.send(b"DATA\r\n")
    assert h.send(b"X: " + b"h" * 996 + b"\r\n\r\n.\r\n") == b"500 Line too long\r\n"
    assert not h.closed


def test_asa_transcript(golden):
    """The human form of a refused verb, the masked EHLO reply and a drop."""
    h = MiddleboxHarness("asa-esmtp", "ims55sp4-cert", tls_available=True)
    h.connect()
    for segment in [SP4_CERT_EHLO, b"XEXCH50 10 2\r\n", b"MAIL FROM:<a@b>\r\n", b"DATA\r\n"]:
        h.send(segment)
    h.send(b"HELO " + b"c" * 600 + b"\r\n")
    golden("middlebox/asa-esmtp-ims55sp4-cert", h.human())


# -- registry ------------------------------------------------------------------


def test_the_new_types_are_registered_with_their_sources():
    """Both types are listed and their docstrings name their sources."""
    types = middlebox.types_()
    assert "cisco-nsp" in types["pix-mailguard-noop"].__doc__
    assert "_default_esmtp_map" in types["asa-esmtp"].__doc__


@pytest.mark.parametrize("entry, key, problem", [
    ({"type": "asa-esmtp", "attributes": {"max_recipients": -1}}, "attributes.max_recipients", "must not be negative"),
    ({"type": "asa-esmtp", "attributes": {"commands": ["HE LO"]}}, "attributes.commands[0]", "not an SMTP verb"),
    ({"type": "pix-mailguard-noop", "attributes": {"noop": True}}, "attributes.noop", "unknown attribute"),
])
def test_bad_attributes_name_the_key(entry, key, problem):
    """Mistakes in the new types' attributes name the key."""
    with pytest.raises(SectionError, match=problem) as raised:
        build(entry)
    assert raised.value.key == key
