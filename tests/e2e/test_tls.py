"""Real TLS on 127.0.0.1: stdlib smtplib, openssl s_client, and what each KB persona does to them."""

import shutil
import smtplib
import socket
import ssl
import subprocess

import pytest


pytestmark = pytest.mark.e2e
FQDN = "mail.example.test"
MESSAGE = b"Subject: tls\r\n\r\nover TLS\r\n"


def trusting(server, **kwargs):
    context = ssl.create_default_context(cafile=str(server.ca_path))
    for key, value in kwargs.items():
        setattr(context, key, value)
    return context


def dial(server, name=None):
    """smtplib connected to 127.0.0.1; name is the host name the client believes it dialled."""
    client = smtplib.SMTP(server.host, server.port, local_hostname="client.example", timeout=10)
    if name:
        client._host = name  # what smtplib checks the certificate against and sends as SNI
    return client


def test_sp4_with_certificate_delivers_over_starttls(serve):
    """ims55sp4-cert: starttls() verifies the FQDN certificate, the message is delivered inside TLS,
    and the transcript records the TLS version and the SNI the client sent."""
    server = serve("ims55sp4-cert")
    with dial(server, FQDN) as client:
        client.starttls(context=trusting(server))
        client.sendmail("a@example.org", ["b@example.test"], MESSAGE)
    (captured,) = server.messages
    assert captured.message.tls is True and captured.message.data == MESSAGE
    session = next(t for t in server.transcripts if t.events("message_accepted"))
    (established,) = session.events("tls_established")
    assert established.fields["sni"] == FQDN
    assert established.fields["version"] in ("TLSv1.2", "TLSv1.3") and established.fields["bits"] >= 128
    assert "~> rcpt TO:<b@example.test>" in session.human()  # smtplib's spelling, inside TLS


def test_q273948_client_checking_the_dialled_ip_fails(serve):
    """KB Q273948: the certificate names the FQDN only, so a client that checks the IP it dialled
    fails the handshake and delivers nothing; the transcript records that no SNI was sent."""
    server = serve("ims55sp3-cert")
    with dial(server) as client:  # checks against "127.0.0.1"
        with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
            client.starttls(context=trusting(server))
    assert server.messages == []
    with dial(server, FQDN) as client:  # the fixed client checks the FQDN
        client.starttls(context=trusting(server))
        client.sendmail("a@example.org", ["b@example.test"], MESSAGE)
    assert len(server.messages) == 1


@pytest.mark.parametrize("profile", ["ims55sp2", "ims55sp3-proxy"])
def test_q237327_starttls_without_certificate_gets_554(serve, profile):
    """KB Q237327: STARTTLS is advertised without a certificate and answered 554; smtplib raises."""
    server = serve(profile)
    with dial(server) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        with pytest.raises(smtplib.SMTPResponseException) as info:
            client.starttls()
        assert (info.value.smtp_code, info.value.smtp_error) == (554, b"Unable to initialize security subsystem")


def test_sp3_direct_without_certificate_does_not_advertise(serve):
    """SP3 reached directly with no certificate: no STARTTLS, so smtplib refuses to start TLS."""
    server = serve("ims55sp3")
    with dial(server) as client:
        with pytest.raises(smtplib.SMTPNotSupportedError):
            client.starttls()


def test_q279214_first_message_fails_then_goes_through(serve):
    """KB Q279214: IIS 4.0 with 128-bit required answers STARTTLS '220 SMTP server ready'; the first
    message from this host is refused 505 after the handshake, the second is delivered."""
    server = serve("iis4-smtp-128bit")
    with dial(server, "iis4.example.test") as client:
        assert client.starttls(context=trusting(server)) == (220, b"SMTP server ready")
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            client.sendmail("user@exchange55.example", ["x@iis4.example.test"], MESSAGE)
        assert info.value.smtp_code == 505
    with dial(server, "iis4.example.test") as client:
        client.starttls(context=trusting(server))
        client.sendmail("user@exchange55.example", ["x@iis4.example.test"], MESSAGE)
    assert len(server.messages) == 1


def test_implicit_tls_on_the_netscape_persona(serve):
    """KB Q218430: the Netscape-style persona speaks TLS from the first byte; SMTP_SSL delivers."""
    server = serve("netscape-ms", implicit_tls=True)
    with smtplib.SMTP_SSL(server.host, server.port, timeout=10, context=trusting(server, check_hostname=False)) as client:
        client.sendmail("a@example.org", ["b@example.test"], MESSAGE)
    session = next(t for t in server.transcripts if t.events("message_accepted"))
    # The banner is written at once and travels as soon as the handshake completes.
    assert session.human().startswith("=== tls_starting implicit=True\n"
                                      "<~ 220 mail.example.test ESMTP server (Netscape Messaging Server")
    assert session.events("tls_established")


def test_ssl_client_on_the_ims_plaintext_port_fails_and_the_server_lives_on(serve):
    """KB Q218430: an SSL client pointed at port 25 of an IMS fails at once; the server records the
    ClientHello, answers nothing, and keeps serving others."""
    server = serve("ims55sp4")
    with pytest.raises((ssl.SSLError, OSError)):
        smtplib.SMTP_SSL(server.host, server.port, timeout=5, context=ssl._create_unverified_context())
    with dial(server) as client:
        assert client.noop()[0] == 250
    hello = [t for t in server.transcripts if t.events("tls_client_hello_on_plaintext")]
    assert hello and hello[0].events("tls_client_hello_on_plaintext")[0].fields == {"action": "ignored"}


def test_garbage_instead_of_a_handshake_is_logged_and_harmless(serve):
    """A client that sends junk after 220 to STARTTLS fails the handshake; the transcript says so."""
    server = serve("ims55sp4-cert")
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        raw.recv(1024)
        raw.sendall(b"EHLO x\r\n")
        raw.recv(1024)
        raw.sendall(b"STARTTLS\r\n")
        assert raw.recv(1024) == b"220 Ready to start TLS\r\n"
        raw.sendall(b"this is not TLS\r\n" * 20)
        raw.settimeout(10)
        while raw.recv(1024):
            pass
    with dial(server) as client:
        assert client.noop()[0] == 250
    (failed,) = [e for t in server.transcripts for e in t.events("tls_failed")]
    assert failed.fields["reason"].startswith("Error: ")  # OpenSSL.SSL.Error and its reason


def test_legacy_tls10_client(serve):
    """The IMS personas accept a TLS 1.0 client (the era's protocol) where the local stacks allow it."""
    from emulator.tls.context import local_tls_versions

    assert local_tls_versions()["TLSv1"], "this machine's pyOpenSSL can offer TLS 1.0"
    server = serve("ims55sp4-cert")
    context = trusting(server)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.warns(DeprecationWarning):
        context.minimum_version = ssl.TLSVersion.TLSv1
    with pytest.warns(DeprecationWarning):
        context.maximum_version = ssl.TLSVersion.TLSv1
    with dial(server, FQDN) as client:
        client.starttls(context=context)
        assert client.sock.version() == "TLSv1"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command-line tool not installed")
def test_openssl_s_client_starttls_smtp(serve):
    """openssl s_client -starttls smtp completes the handshake against ims55sp4-cert and verifies the chain."""
    server = serve("ims55sp4-cert")
    result = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect", f"{server.host}:{server.port}",
         "-CAfile", str(server.ca_path), "-servername", FQDN, "-verify_return_error", "-crlf", "-ign_eof"],
        input=b"EHLO client.example\nQUIT\n", capture_output=True, timeout=30)
    out = result.stdout.decode("latin-1")
    assert "Verify return code: 0 (ok)" in out
    assert "250-mail.example.test Hello [127.0.0.1]" in out and "221 closing connection" in out
