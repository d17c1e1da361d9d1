"""Each sender persona against the project's server personas, in memory
(the sans-IO client against the server core's Harness): the KB outcome in
both directions.

Tests marked "issue 5" use test-local stand-ins from local_servers.py for
server behaviour that arrives with the authentication feature; after that
merge they can use the shipped ex50, ims55sp1 and ims55sp2 profiles.
"""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

import local_servers
from emulator.tls.certs import CertSpec, CertStore
from emulator.profiles import loader as profiles
from emulator.sender.profile import Credentials
from emulator.sender.host import converse
from emulator.testing.harness import Harness
from emulator.core.connection import Server

TESTER = Credentials("tester", "EXAMPLE", "secret")
NDR = "MSEXCH:IMS:POF:FDRC:NTS2 3502 (000B0981) 502 Server does not support AUTH."


@pytest.fixture
def local(tmp_path):
    """A folder for test-local server profiles, with the NTLM stub quirk registered."""
    local_servers.register()
    yield tmp_path
    local_servers.unregister()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return CertStore(tmp_path_factory.mktemp("state"))


def der(store: CertStore, *names: str, ips: tuple[str, ...] = ()) -> bytes:
    cert, _ = store.leaf(CertSpec(dns_names=names, ip_addresses=ips, key_type="ec"))
    return x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)


# -- KB Q195201: Exchange 5.0 XAUTH vs Exchange 5.5 AUTH -------------------

def test_ex50_sender_quits_without_xauth_before_the_fix(local):
    """Q195201 (issue 5: ims55sp1): a 5.0 sender quits when EHLO lacks XAUTH, and reports its NDR."""
    harness = Harness(local_servers.ims55sp1_like(local))
    result = converse("ex50-sender", harness, credentials=TESTER)
    assert not result.delivered and result.status == 1
    assert result.outcome.failure == "no_auth" and result.outcome.report == NDR
    human = result.transcript.human()
    assert "<- 250-AUTH LOGIN" in human and "XAUTH NTLM" not in human
    assert human.split("<- 250 AUTH=LOGIN\n")[1].startswith("=== auth_not_offered wanted=XAUTH\n-> QUIT\n")
    assert harness.messages == []


def test_ex50_sender_delivers_through_xauth_after_the_fix(local):
    """Q195201 (issue 5: ims55sp2 with XAUTH): against a fixed 5.5 the 5.0 sender authenticates with XAUTH NTLM."""
    harness = Harness(local_servers.ims55_fixed_like(local))
    result = converse("ex50-sender", harness, credentials=TESTER)
    assert result.delivered and result.status == 0
    human = result.transcript.human()
    assert "-> XAUTH NTLM TlRMTVNTUAAB" in human  # NEGOTIATE as initial response
    assert "<- 235 ntlm authentication successful" in human
    assert "AUTH NTLM" not in human.replace("XAUTH NTLM", "")
    (message,) = harness.messages
    assert message.auth_user == "EXAMPLE\\tester"


def test_ex50_sender_with_a_wrong_password_is_refused(local):
    """A refused XAUTH ends the attempt: QUIT, not delivered, failure auth_failed."""
    harness = Harness(local_servers.ims55_fixed_like(local))
    result = converse("ex50-sender", harness, credentials=Credentials("tester", "EXAMPLE", "wrong"))
    assert not result.delivered and result.outcome.failure == "auth_failed"
    assert result.last_reply == "221 closing connection"
    assert "-> QUIT" in result.transcript.human() and harness.messages == []


def test_ims55sp1_sender_sends_auth_ntlm_to_exchange50_and_fails(local):
    """Q195201 other direction (issue 5: ex50): a pre-fix 5.5 sends AUTH NTLM to 5.0, which answers 500."""
    harness = Harness(local_servers.ex50_like(local))
    result = converse("ims55sp1-sender", harness, credentials=TESTER)
    human = result.transcript.human()
    assert "<- 250-XAUTH" in human or "<- 250 XAUTH" in human
    assert "-> AUTH NTLM TlRMTVNTUAAB" in human
    assert "<- 500 command not recognized" in human
    assert not result.delivered and result.outcome.failure == "auth_failed"
    assert harness.messages == []


def test_ims55sp2_sender_uses_xauth_towards_exchange50(local):
    """After the fix (5.5.2394.0, in SP2) the 5.5 sender uses XAUTH where only XAUTH is listed [P]."""
    harness = Harness(local_servers.ex50_like(local))
    result = converse("ims55sp2-sender", harness, credentials=TESTER)
    assert result.delivered
    assert "-> XAUTH NTLM TlRMTVNTUAAB" in result.transcript.human()


def test_ims55sp2_sender_auth_ntlm_with_initial_response(local):
    """Q262945's form (issue 5: ims55sp1/sp2): AUTH NTLM <NEGOTIATE> on one line, 334 CHALLENGE, AUTHENTICATE, 235."""
    harness = Harness(local_servers.ims55sp1_like(local))
    result = converse("ims55sp2-sender", harness, credentials=TESTER)
    lines = result.transcript.human().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("-> AUTH NTLM "))
    assert lines[start + 1].startswith("<- 334 TlRMTVNTUAAC")  # the CHALLENGE
    assert lines[start + 2].startswith("-> TlRMTVNTUAAD")  # the AUTHENTICATE
    assert lines[start + 3] == "<- 235 ntlm authentication successful"
    assert lines[start + 4] == "=== auth command=AUTH NTLM outcome=ok"
    assert result.delivered and harness.messages[0].auth_user == "EXAMPLE\\tester"


def test_ims55sp2_sender_without_credentials_does_not_authenticate(local):
    """Authentication happens only when the 5.5 sender is configured with credentials."""
    harness = Harness(local_servers.ims55sp1_like(local))
    result = converse("ims55sp2-sender", harness)
    assert result.delivered and "AUTH NTLM" not in result.transcript.human()
    assert harness.messages[0].auth_user is None


# -- Exchange 5.5 sender: HELO fallback (Q241892), STARTTLS (Q237327) ---------

def test_ims55sp2_sender_falls_back_to_helo(local):
    """Q241892: an EHLO answered with an error (here a PIX-style 500) is retried as HELO."""
    path = local_servers.write_profile(local, "ehlo-refused", quirks=[
        {"type": "reply_override", "attributes": {"command": "EHLO", "reply": "500 Unrecognized command"}}])
    harness = Harness(path)
    result = converse("ims55sp2-sender", harness)
    human = result.transcript.human()
    assert "-> EHLO ims55.example.org\n<- 500 Unrecognized command\n" in human
    assert "-> HELO ims55.example.org\n<- 250 OK\n" in human
    assert "-> MAIL FROM:<sender@example.org>\n" in human  # no SIZE/RET: HELO lists no extensions
    assert result.delivered


def test_ims55sp2_sender_continues_in_plaintext_after_554(local):
    """Q237327: SP2 server lists STARTTLS without a certificate; 554; the 5.5 sender goes on in plaintext [P]."""
    harness = Harness("ims55sp2")
    result = converse("ims55sp2-sender", harness)
    human = result.transcript.human()
    assert "-> STARTTLS\n<- 554 Unable to initialize security subsystem\n" in human
    assert "=== starttls_refused" in human
    assert result.delivered and harness.messages[0].tls is False


def test_ims55sp2_sender_does_not_try_starttls_when_not_listed():
    """Q237327 fixed (ims55sp4, no certificate): no STARTTLS listed, none sent."""
    result = converse("ims55sp2-sender", Harness("ims55sp4"))
    assert result.delivered and "STARTTLS" not in result.transcript.human()


def test_ims55sp2_sender_uses_starttls_and_says_ehlo_again(store):
    """STARTTLS when listed; after the handshake a new EHLO, then the message inside TLS."""
    harness = Harness("ims55sp4-cert", tls_available=True)
    result = converse("ims55sp2-sender", harness, certificate=der(store, "mail.example.test"),
                      server_name="mail.example.test")
    human = result.transcript.human()
    assert "-> STARTTLS\n<- 220 Ready to start TLS\n=== tls_starting\n=== tls_established" in human
    assert "~> EHLO ims55.example.org" in human and "~> MAIL FROM:<sender@example.org> SIZE=" in human
    assert result.delivered and harness.messages[0].tls is True


def test_ims55_sender_against_iis4_128bit_first_message_fails_second_goes_through(store):
    """Q279214, the KB's own pairing: the 5.5 sender's STARTTLS gets 220 SMTP server ready, its MAIL FROM
    505, it QUITs; a second message from the same host is delivered; with the fix the first one is."""
    certificate = der(store, "iis4.example.test")
    server = Server(profiles.load("iis4-smtp-128bit"), tls_available=True)
    first, second = (converse("ims55sp2-sender", Harness(None, server=server), certificate=certificate,
                              server_name="iis4.example.test") for _ in range(2))
    human = first.transcript.human()
    assert "-> STARTTLS\n<- 220 SMTP server ready\n" in human
    assert "<~ 505 Must issue a STARTTLS command first\n~> QUIT\n" in human
    assert not first.delivered and first.outcome.failure == "rejected"
    assert second.delivered
    fixed = Server(profiles.load("iis4-smtp-128bit-fixed"), tls_available=True)
    assert converse("ims55sp2-sender", Harness(None, server=fixed), certificate=certificate,
                    server_name="iis4.example.test").delivered


# -- KB Q273948: Windows 2000 IMS checks the certificate against the dialled IP

@pytest.mark.parametrize("persona, ips, delivered", [
    ("ims55sp3-w2k-sender", (), False),          # FQDN-only certificate: the IP check fails
    ("ims55sp4-w2k-sender", (), True),           # SP4 checks the FQDN
    ("ims55sp3-w2k-sender", ("192.0.2.25",), True),  # the bug is exactly "checks the IP": an IP SAN passes
])
def test_q273948_certificate_name_check(store, persona, ips, delivered):
    """Q273948: before SP4 the certificate must name the dialled IP; from SP4 the FQDN."""
    harness = Harness("ims55sp3-cert", tls_available=True)
    result = converse(persona, harness, certificate=der(store, "mail.example.test", ips=ips),
                      dialled="192.0.2.25", server_name="mail.example.test")
    assert result.delivered is delivered
    if not delivered:
        assert result.outcome.failure == "tls_failed"
        assert "does not match 192.0.2.25 (dialled check)" in result.outcome.error
        assert harness.messages == []


def test_post_sp4_sender_needs_the_server_name(store):
    """The FQDN check has nothing to compare with when only an address is known: it fails, saying so."""
    harness = Harness("ims55sp3-cert", tls_available=True)
    result = converse("ims55sp4-w2k-sender", harness, certificate=der(store, "mail.example.test"))
    assert not result.delivered and "no host name to check the certificate against" in result.outcome.error


def test_post_sp4_sender_refuses_a_certificate_for_another_name(store):
    """The FQDN check is a real check: a certificate for another host fails."""
    harness = Harness("ims55sp3-cert", tls_available=True)
    result = converse("ims55sp4-w2k-sender", harness, certificate=der(store, "other.example.test"),
                      server_name="mail.example.test")
    assert not result.delivered
    assert "certificate for other.example.test does not match mail.example.test (fqdn check)" in result.outcome.error


def test_outlook98_needs_a_real_socket():
    """Implicit TLS cannot run against the in-memory server; converse says so."""
    with pytest.raises(ValueError, match="starts with TLS"):
        converse("outlook98", Harness("ims55sp4"))
