"""The IIS 5.0/6.0 and Exchange 2000/2003 personas over real sockets with real clients: smtplib and
aiosmtplib (LOGIN, STARTTLS, PIPELINING, SIZE), swaks and curl with AUTH NTLM against ex2003."""

import asyncio
import shutil
import smtplib
import socket
import ssl
import subprocess
from email.message import EmailMessage

import aiosmtplib
import pytest

pytestmark = pytest.mark.e2e
MESSAGE = b"Subject: iis\r\n\r\nhello\r\n"


def trusting(server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca_path))


def auth_outcomes(server) -> list[tuple[str, str]]:
    return [(r.fields["mechanism"], r.fields["outcome"]) for t in server.transcripts for r in t.events("auth")]


def test_smtplib_login_and_size_against_ex2003(serve):
    """smtplib picks LOGIN from 'AUTH GSSAPI NTLM LOGIN', logs in with 235 2.7.0, and sends SIZE= because
    the bare SIZE keyword is listed; a wrong password raises 535 5.7.3 Authentication unsuccessful."""
    server = serve("ex2003")
    with smtplib.SMTP(server.host, server.port, local_hostname="client.example", timeout=10) as client:
        assert client.login("tester", "secret") == (235, b"2.7.0 Authentication successful")
        assert client.has_extn("size") and client.has_extn("pipelining") and client.has_extn("x-exps")
        client.sendmail("a@example.org", ["b@example.test"], MESSAGE)
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login("tester", "wrong")
        assert (refused.value.smtp_code, refused.value.smtp_error) == (535, b"5.7.3 Authentication unsuccessful")
    (captured,) = server.messages
    assert captured.message.auth_user == "tester" and captured.message.data == MESSAGE
    session = next(t for t in server.transcripts if t.events("message_accepted"))
    assert f"-> mail FROM:<a@example.org> size={len(MESSAGE)}" in session.human()
    assert auth_outcomes(server) == [("LOGIN", "success"), ("LOGIN", "failure")]


def test_smtplib_size_limit_of_iis6(serve):
    """iis6-smtp lists SIZE 2097152: smtplib announces a larger message and MAIL is refused with 552 5.3.4."""
    server = serve("iis6-smtp")
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.org", ["b@example.test"], b"Subject: big\r\n\r\n" + b"x" * 2097152)
        assert refused.value.smtp_code == 552
    assert server.messages == []


def test_smtplib_starttls_against_iis6_cert(serve):
    """iis6-smtp-cert: smtplib finds STARTTLS (listed after TLS), verifies the FQDN certificate and delivers
    inside TLS."""
    server = serve("iis6-smtp-cert")
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client._host = "iis6.example.test"  # the name the certificate is checked against
        client.ehlo("client.example")
        assert client.has_extn("tls") and client.has_extn("starttls")
        assert client.starttls(context=trusting(server)) == (220, b"2.0.0 SMTP server ready")
        client.sendmail("a@example.org", ["b@example.test"], MESSAGE)
    (captured,) = server.messages
    assert captured.message.tls is True


def test_smtplib_against_ex2003_tls_required(serve):
    """KB 329061: without STARTTLS smtplib's MAIL is refused with 530 5.7.0; with it the message is delivered."""
    server = serve("ex2003-tls-required")
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.org", ["b@example.test"], MESSAGE)
        assert (refused.value.smtp_code, refused.value.smtp_error) == (
            530, b"5.7.0 Must issue a start TLS command first")
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client._host = "ex2003.example.test"
        client.starttls(context=trusting(server))
        client.sendmail("a@example.org", ["b@example.test"], MESSAGE)
    assert [m.message.tls for m in server.messages] == [True]


def test_pipelined_group_over_a_socket(serve):
    """PIPELINING: MAIL, two RCPT and DATA in one write get their four replies in order on iis5-smtp."""
    server = serve("iis5-smtp")
    expected = (b"250 2.1.0 a@example.org....Sender OK\r\n250 2.1.5 b@example.test\r\n250 2.1.5 c@example.test\r\n"
                b"354 Start mail input; end with <CRLF>.<CRLF>\r\n")
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        stream = sock.makefile("rb")
        assert b"Microsoft ESMTP MAIL Service, Version: 5.0.2195.6713 ready at  " in stream.readline()
        sock.sendall(b"EHLO client.example\r\n")
        assert b"250-PIPELINING\r\n" in b"".join(iter(stream.readline, b"250 OK\r\n"))
        sock.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n")
        got = b""
        while not got.endswith(b"<CRLF>.<CRLF>\r\n"):
            got += stream.readline()
        assert got == expected
        sock.sendall(b"Subject: piped\r\n\r\nx\r\n.\r\nQUIT\r\n")
        assert stream.readline().startswith(b"250 2.6.0 <")
        assert stream.readline() == b"221 2.0.0 iis5.example.test Service closing transmission channel\r\n"
    assert len(server.messages) == 1


def _message() -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.org", "b@example.test", "aiosmtplib"
    message.set_content("hello")
    return message


def test_aiosmtplib_login_against_ex2000(serve):
    """aiosmtplib logs in with LOGIN (its choice from GSSAPI NTLM LOGIN) and sends; the reply it returns is
    the persona's end-of-data text."""
    server = serve("ex2000")
    errors, reply = asyncio.run(aiosmtplib.send(_message(), hostname=server.host, port=server.port,
                                                username="tester", password="secret", start_tls=False, timeout=10))
    assert errors == {} and reply.endswith("Queued mail for delivery") and reply.startswith("2.6.0 <")
    assert server.messages[0].message.auth_user == "tester"


def test_aiosmtplib_starttls_against_iis6_cert(serve):
    """aiosmtplib with start_tls=True upgrades on iis6-smtp-cert, verifies the certificate and delivers."""
    server = serve("iis6-smtp-cert")
    context = trusting(server)
    context.check_hostname = False  # aiosmtplib checks against the dialled 127.0.0.1; the FQDN test is smtplib's

    async def send():
        smtp = aiosmtplib.SMTP(hostname=server.host, port=server.port, start_tls=False, tls_context=context,
                               timeout=10)
        async with smtp:
            await smtp.ehlo()
            assert smtp.supports_extension("starttls")
            response = await smtp.starttls()
            assert (response.code, response.message) == (220, "2.0.0 SMTP server ready")
            return await smtp.send_message(_message())

    errors, _ = asyncio.run(send())
    assert errors == {} and server.messages[0].message.tls is True


def _swaks_ntlm() -> bool:
    if shutil.which("swaks") is None:
        return False
    support = subprocess.run(["swaks", "--support"], capture_output=True, text=True, timeout=30)
    return "AUTH NTLM supported" in support.stdout + support.stderr


def _curl_ntlm() -> bool:
    if shutil.which("curl") is None:
        return False
    return " NTLM" in subprocess.run(["curl", "--version"], capture_output=True, text=True, timeout=30).stdout


@pytest.mark.skipif(not _swaks_ntlm(), reason="swaks with Authen::NTLM is not installed (apt-get install swaks "
                                              "libauthen-ntlm-perl; .ci/run installs both)")
def test_swaks_auth_ntlm_against_ex2003(serve):
    """swaks -a NTLM logs in to ex2003 with the configured account and delivers; a wrong password gets the
    product's '535 5.7.3 Authentication unsuccessful' and nothing is sent."""
    server = serve("ex2003")
    command = ["swaks", "--server", f"{server.host}:{server.port}", "--from", "a@example.org", "--to",
               "b@example.test", "-a", "NTLM", "-au", "tester", "--auth-extra", "domain=EXAMPLE", "--timeout", "10"]
    good = subprocess.run([*command, "-ap", "secret"], capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "<-  235 2.7.0 Authentication successful" in good.stdout
    bad = subprocess.run([*command, "-ap", "wrong"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    assert "<** 535 5.7.3 Authentication unsuccessful" in bad.stdout + bad.stderr
    assert len(server.messages) == 1 and server.messages[0].message.auth_user == "EXAMPLE\\tester"
    assert auth_outcomes(server) == [("NTLM", "success"), ("NTLM", "failure")]


@pytest.mark.skipif(not _curl_ntlm(), reason="curl without NTLM support")
def test_curl_auth_ntlm_against_ex2003(serve, tmp_path):
    """curl --login-options AUTH=NTLM logs in to ex2003 and delivers; a wrong password gets 535 5.7.3
    Authentication unsuccessful (curl's 'Login denied', exit 67)."""
    server = serve("ex2003")
    body = tmp_path / "message.txt"
    body.write_bytes(MESSAGE)
    command = ["curl", "-v", "-sS", "--max-time", "20", "--url", f"smtp://{server.host}:{server.port}",
               "--mail-from", "a@example.org", "--mail-rcpt", "b@example.test", "--login-options", "AUTH=NTLM",
               "-T", str(body)]
    good = subprocess.run([*command, "--user", "EXAMPLE\\tester:secret"], capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
    assert "< 235 2.7.0 Authentication successful" in good.stderr
    bad = subprocess.run([*command, "--user", "EXAMPLE\\tester:wrong"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 67 and "< 535 5.7.3 Authentication unsuccessful" in bad.stderr
    (captured,) = server.messages
    assert captured.message.auth_user == "EXAMPLE\\tester" and captured.message.data == MESSAGE
