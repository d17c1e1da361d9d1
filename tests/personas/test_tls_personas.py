"""STARTTLS personas in memory: who advertises TLS, what STARTTLS gets, and the IIS 4.0 128-bit bug."""

import pytest

from emulator.profiles import loader as profiles
from emulator.testing.harness import Harness
from emulator.core.connection import Server

TLS_INFO = {"version": "TLSv1.2", "cipher": "ECDHE-RSA-AES128-GCM-SHA256", "bits": 128, "sni": None}


def session(name, *, certificate, peer=("192.0.2.10", 1025), server=None):
    h = Harness(name, tls_available=certificate, peer=peer, server=server)
    h.connect()
    return h


@pytest.mark.parametrize("name, certificate, advertised", [
    ("ims55sp2", False, True),        # Q237327: always, even without a certificate
    ("ims55sp2", True, True),
    ("ims55sp3", False, False),       # fixed in SP3 when reached directly
    ("ims55sp3", True, True),
    ("ims55sp3-proxy", False, True),  # ...but not behind a proxy (fixed in SP4)
    ("ims55sp4", False, False),       # fixed in both cases
    ("ims55sp4", True, True),
    ("iis4-smtp-128bit", False, True),
])
def test_starttls_advertisement_follows_q237327(name, certificate, advertised):
    """EHLO lists STARTTLS exactly where KB Q237327 says each service pack did."""
    h = session(name, certificate=certificate)
    assert (b"250 STARTTLS\r\n" in h.send(b"EHLO client.example\r\n")) is advertised


def test_ims55sp2_no_certificate_session(golden):
    """SP2 without a certificate: STARTTLS listed, then 554 Unable to initialize security subsystem."""
    h = session("ims55sp2", certificate=False)
    h.send(b"EHLO client.example\r\n")
    assert h.send(b"STARTTLS\r\n") == b"554 Unable to initialize security subsystem\r\n"
    h.send(b"QUIT\r\n")
    golden("ims55sp2/starttls-no-certificate", h.human())


def test_ims55sp4_with_certificate_full_tls_session(golden):
    """SP4 with a certificate: 220, handshake, a new EHLO without STARTTLS, and a message inside TLS."""
    h = session("ims55sp4-cert", certificate=True)
    h.send(b"EHLO client.example\r\n")
    assert h.send(b"STARTTLS\r\n") == b"220 Ready to start TLS\r\n"
    assert h.tls_pending
    h.handshake(**TLS_INFO)
    ehlo = h.send(b"EHLO client.example\r\n")
    assert b"STARTTLS" not in ehlo  # RFC 3207 4.2: not offered again
    h.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSubject: tls\r\n\r\nx\r\n.\r\nQUIT\r\n")
    assert h.messages[0].tls is True
    golden("ims55sp4-cert/starttls-session", h.human())


def test_iis4_first_session_gets_505_and_a_later_one_goes_through(golden):
    """KB Q279214: after '220 SMTP server ready' and the handshake, the first message from a host gets 505;
    the sender QUITs; the next connection from the same host delivers."""
    server = Server(profiles.load("iis4-smtp-128bit"), tls_available=True)
    first = session("iis4-smtp-128bit", certificate=True, server=server)
    first.send(b"EHLO exchange55.example\r\n")
    assert first.send(b"STARTTLS\r\n") == b"220 SMTP server ready\r\n"
    first.handshake(**TLS_INFO)
    assert first.send(b"MAIL FROM:<user@exchange55.example>\r\n") == b"505 Must issue a STARTTLS command first\r\n"
    first.send(b"QUIT\r\n")
    golden("iis4-smtp-128bit/first-message-505", first.human())

    second = session("iis4-smtp-128bit", certificate=True, server=server)
    second.send(b"EHLO exchange55.example\r\nSTARTTLS\r\n")
    second.handshake(**TLS_INFO)
    second.send(b"MAIL FROM:<user@exchange55.example>\r\nRCPT TO:<x@iis4.example.test>\r\nDATA\r\nhi\r\n.\r\n")
    assert len(second.messages) == 1


def test_iis4_memory_is_per_peer_and_resettable():
    """Another sending host fails its first message too; reset() forgets every host."""
    server = Server(profiles.load("iis4-smtp-128bit"), tls_available=True)

    def mail_reply(peer):
        h = session("iis4-smtp-128bit", certificate=True, server=server, peer=peer)
        h.send(b"EHLO x\r\nSTARTTLS\r\n")
        h.handshake(**TLS_INFO)
        return h.send(b"MAIL FROM:<a@b>\r\n")[:3]

    assert mail_reply(("192.0.2.1", 1)) == b"505"
    assert mail_reply(("192.0.2.1", 2)) == b"250"
    assert mail_reply(("192.0.2.2", 1)) == b"505"
    server.reset()
    assert mail_reply(("192.0.2.1", 3)) == b"505"


def test_iis4_fixed_build_accepts_the_first_message():
    """With smtpsvc 5.5.1877.64 (the Q279214 fix) the first TLS message goes through."""
    h = session("iis4-smtp-128bit-fixed", certificate=True)
    h.send(b"EHLO x\r\nSTARTTLS\r\n")
    h.handshake(**TLS_INFO)
    assert h.send(b"MAIL FROM:<a@b>\r\n") == b"250 a@b....Sender OK\r\n"


def test_iis4_requires_tls_and_128_bits():
    """MAIL without TLS, or inside TLS weaker than 128 bits, gets 505 even on the fixed build."""
    h = session("iis4-smtp-128bit-fixed", certificate=True)
    assert h.send(b"MAIL FROM:<a@b>\r\n") == b"505 Must issue a STARTTLS command first\r\n"
    h.send(b"STARTTLS\r\n")
    h.handshake(**{**TLS_INFO, "bits": 56})
    assert h.send(b"MAIL FROM:<a@b>\r\n") == b"505 Must issue a STARTTLS command first\r\n"


def test_iis4_greeting_is_multi_line_with_date_and_version():
    """IIS 4.0 greets with the nmap-known two-line banner (Q198415 'ESMTP spoken here'),
    with the service's five-part version (Received headers: SMTPSVC(5.5.1877.197.19))."""
    assert Harness("iis4-smtp-128bit").connect() == (
        b"220-iis4.example.test Microsoft SMTP MAIL ready at Mon, 23 Nov 2026 10:00:00 +0000 "
        b"Version: 5.5.1877.197.19\r\n220 ESMTP spoken here\r\n")


CLIENT_HELLO = bytes.fromhex("160301") + b"\x00\xf1\x01\x00\x00\xed\x03\x03" + bytes(range(32)) + b"\x0a" * 3


def test_client_hello_on_ims_port_25_gets_no_answer():
    """KB Q218430: an SSL client on port 25 gets nothing back; the transcript records what came."""
    h = session("ims55sp4", certificate=False)
    assert h.send(CLIENT_HELLO + b"x" * 600) == b""
    assert h.send(b"QUIT\r\n") == b""
    (event,) = h.transcript.events("tls_client_hello_on_plaintext")
    assert event.fields == {"action": "ignored"}
    assert h.timeout() == b"" and h.closed == "close"


def test_client_hello_is_processed_as_bytes_where_the_profile_says_so():
    """A profile with client_hello_on_plaintext: process answers the binary as commands."""
    from dataclasses import replace

    from emulator.tls.config import TLSConfig

    p = profiles.load("ims55sp4")
    p = replace(p, tls=TLSConfig(client_hello_on_plaintext="process"))
    h = Harness(p)
    h.connect()
    assert h.send(CLIENT_HELLO) == b"500 Unrecognized command\r\n" * CLIENT_HELLO.count(b"\n")
    assert h.transcript.events("tls_client_hello_on_plaintext")[0].fields == {"action": "processed"}


def test_starttls_buffer_leak_executes_pipelined_plaintext():
    """CVE-2011-0411 persona: RSET pipelined after STARTTLS is answered inside TLS."""
    from dataclasses import replace

    from emulator import quirks

    p = profiles.load("ims55sp4-cert")
    quirk = quirks.build({"type": "starttls_buffer_leak"})
    h = Harness(replace(p, quirks=(quirk,), hooks=profiles._hooks([quirk])), tls_available=True)
    h.connect()
    h.send(b"EHLO c\r\n")
    assert h.send(b"STARTTLS\r\nRSET\r\n") == b"220 Ready to start TLS\r\n"
    assert h.handshake(**TLS_INFO) == b"250 OK\r\n"
    assert "~> " not in h.human().split("=== tls_established")[1].split("<~ 250 OK")[0]


@pytest.mark.parametrize("patch, key, problem", [
    ({"advertise": "sometimes"}, "tls.advertise", "must be one of"),
    ({"min_version": "SSLv3"}, "tls.min_version", "must be one of"),
    ({"min_version": "TLSv1.2", "max_version": "TLSv1"}, "tls.max_version", "below min_version"),
    ({"certificate": "files"}, "tls.certificate", "needs cert_file and key_file"),
    ({"names": "mail.example.test"}, "tls.names", "list of quoted strings"),
    ({"implicit": "yes"}, "tls.implicit", "true or false"),
    ({"min_bits": -1}, "tls.min_bits", "0 or more"),
    ({"colour": "blue"}, "tls.colour", "unknown key"),
    ({"signature_hash": "md2"}, "tls.signature_hash", "must be one of"),
    ({"certificate": "generated", "signature_hash": "md5", "min_version": "TLSv1.2"}, "tls.signature_hash",
     "needs min_version TLSv1"),
])
def test_tls_section_errors_name_the_key(tmp_path, patch, key, problem):
    """Each mistake in tls: is a ProfileError naming tls.<key>."""
    import yaml

    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "extends": "ims55sp4", "tls": patch}, default_style='"')
                    .replace('"name"', "name").replace('"extends"', "extends").replace('"tls"', "tls"))
    with pytest.raises(profiles.ProfileError) as info:
        profiles.load(path)
    assert info.value.key == key and problem in info.value.problem
