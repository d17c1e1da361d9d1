"""The PIX NOOP variant and the ASA's inspect esmtp on real sockets: Postfix's
smtp client (a throwaway instance relaying to the emulator), smtplib and swaks."""

import shutil
import smtplib
import subprocess
import time

import pytest

from real_servers import postfix_installed, postfix_server

pytestmark = pytest.mark.e2e
MESSAGE = b"Subject: through the firewall\r\n\r\nHello.\r\n"
MASTER_CF = "smtp unix - - n - - smtp\ntlsmgr unix - - n 1000? 1 tlsmgr\n"
needs_swaks = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")


def wait_for_log(folder, text, deadline=60.0):
    """Poll Postfix's maillog until a line holds text; the deadline only bounds the loop."""
    log = folder / "maillog"
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if log.exists() and text in log.read_text(errors="replace"):
            return log.read_text(errors="replace")
        time.sleep(0.2)
    raise AssertionError(f"never logged {text!r}:\n{log.read_text(errors='replace') if log.exists() else ''}")


def relay_through(serve, tmp_path, main_cf=""):
    """A Postfix instance whose smtp client relays everything to the
    emulated IMS behind pix-mailguard-noop; one message is submitted to its
    smtpd.  Returns (emulated server, maillog text once the delivery ended)."""
    server = serve("ims55sp4", middlebox="pix-mailguard-noop", maildir=tmp_path / "maildir")
    folders = []
    relay = f"""
        default_transport = smtp
        relay_transport = smtp
        relayhost = [127.0.0.1]:{server.port}
        mydestination = $myhostname
        smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
        smtp_tls_security_level = may
        {main_cf}
        """
    with postfix_server("relay.postfix.test", main_cf=relay, master_cf=MASTER_CF,
                        folder_out=folders) as port:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30) as client:
            client.sendmail("a@relay.postfix.test", ["b@example.test"], MESSAGE)
        log = wait_for_log(folders[0], " status=")
    return server, log


@pytest.mark.skipif(not postfix_installed(), reason="needs Postfix and root (a throwaway instance)")
def test_postfix_detects_the_pix_sends_helo_and_delivers(serve, tmp_path):
    """Postfix reads the masked banner as a PIX (smtp_proto.c), turns on
    disable_esmtp (delay_dotcrlf only for mail queued 500 s or more), says
    HELO and delivers: the server sees no EHLO at all."""
    server, log = relay_through(serve, tmp_path)
    # delay_dotcrlf is left out on a first attempt (smtp_pix_workaround_threshold_time, 500 s)
    assert f"enabling PIX workarounds: disable_esmtp for 127.0.0.1[127.0.0.1]:{server.port}\n" in log
    assert "status=sent (250 OK)" in log
    (captured,) = server.messages
    assert captured.message.data.endswith(MESSAGE[len(b"Subject: through the firewall\r\n"):])
    upstream = next(t for t in server.transcripts if not t.middlebox and t.events("message_accepted"))
    assert upstream.client_bytes().startswith(b"HELO ")


@pytest.mark.skipif(not postfix_installed(), reason="needs Postfix and root (a throwaway instance)")
def test_postfix_without_pix_workarounds_meets_the_noop_ehlo_and_bounces(serve, tmp_path):
    """With smtp_pix_workarounds empty Postfix sends EHLO; the PIX turns it
    into NOOP, Postfix takes the bare 250 OK as an ESMTP server with no
    extensions (no STARTTLS, so TLS is skipped at level may), and its MAIL
    FROM meets the IMS's 503: the server never had a HELO.  The message
    bounces."""
    server, log = relay_through(serve, tmp_path, main_cf="smtp_pix_workarounds =")
    assert "enabling PIX workarounds" not in log
    assert "said: 503 Bad sequence of commands (in reply to MAIL FROM command)" in log
    assert "status=bounced" in log
    assert server.messages == []
    upstream = next(t for t in server.transcripts if not t.middlebox and b"MAIL" in t.client_bytes())
    assert upstream.client_bytes().startswith(b"NOOP ")


def test_smtplib_behind_the_noop_pix(serve, tmp_path):
    """smtplib's EHLO gets a bare 250 OK: no STARTTLS, no AUTH to use, and
    sendmail's MAIL meets the 503; after an explicit HELO it delivers."""
    server = serve("ims55sp4-cert", middlebox="pix-mailguard-noop", maildir=tmp_path / "maildir")
    with smtplib.SMTP(server.host, server.port, local_hostname="client.example", timeout=10) as client:
        assert client.ehlo() == (250, b"OK") and client.esmtp_features == {}
        with pytest.raises(smtplib.SMTPNotSupportedError, match="STARTTLS extension not supported"):
            client.starttls()
        assert client.docmd("STARTTLS") == (250, b"OK")  # silently a NOOP
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.org", ["b@example.test"], MESSAGE)
        assert refused.value.smtp_code == 503
        client.helo("client.example")
        assert client.sendmail("a@example.org", ["b@example.test"], MESSAGE) == {}
    assert [m.message.data for m in server.messages] == [MESSAGE]


@needs_swaks
def test_swaks_behind_the_noop_pix(serve):
    """swaks --tls: the 250 OK to EHLO lists no STARTTLS, so swaks stops
    (exit 29, "Host did not advertise STARTTLS")."""
    server = serve("ims55sp4-cert", middlebox="pix-mailguard-noop")
    result = subprocess.run(["swaks", "--server", f"127.0.0.1:{server.port}", "--tls", "--helo", "client.example",
                             "--from", "a@example.org", "--to", "b@example.test"],
                            capture_output=True, text=True, timeout=60)
    assert "<-  250 OK" in result.stdout
    assert result.returncode == 29 and "Host did not advertise STARTTLS" in result.stdout + result.stderr


# -- asa-esmtp ---------------------------------------------------------------


def test_smtplib_meets_the_asa_recipient_limit(serve, tmp_path):
    """100 recipients pass; the 101st RCPT closes the connection, which
    smtplib reports as SMTPServerDisconnected; nothing is delivered."""
    server = serve("ims55sp4", middlebox="asa-esmtp", maildir=tmp_path / "maildir")
    with smtplib.SMTP(server.host, server.port, local_hostname="client.example", timeout=10) as client:
        client.ehlo()
        assert client.has_extn("size") and not client.has_extn("auth")  # AUTH is "others": masked
        recipients = [f"r{i}@example.test" for i in range(101)]
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.sendmail("a@example.org", recipients, MESSAGE)
    assert server.messages == []
    with smtplib.SMTP(server.host, server.port, local_hostname="client.example", timeout=10) as client:
        assert client.sendmail("a@example.org", recipients[:100], MESSAGE) == {}
    assert len(server.messages) == 1


def test_smtplib_meets_the_asa_header_and_command_limits(serve):
    """A 999-byte header line and a 513-byte command line each end the
    connection; a 998-byte header line is delivered."""
    server = serve("ims55sp4", middlebox="asa-esmtp")
    header = b"X-Long: " + b"h" * 990 + b"\r\n"
    assert len(header) == 1000  # 998 bytes and CRLF
    with smtplib.SMTP(server.host, server.port, local_hostname="client.example", timeout=10) as client:
        assert client.sendmail("a@example.org", ["b@example.test"], header + MESSAGE) == {}
    with smtplib.SMTP(server.host, server.port, local_hostname="client.example", timeout=10) as client:
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.sendmail("a@example.org", ["b@example.test"], b"X-Long: h" + header + MESSAGE)
    with smtplib.SMTP(server.host, server.port, local_hostname="client.example", timeout=10) as client:
        client.ehlo()
        assert client.docmd("VRFY", "v" * 505)[0] == 500  # 512 bytes with its CRLF: the IMS answers
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.docmd("VRFY", "v" * 506)  # 513 bytes: dropped
    assert len(server.messages) == 1


@needs_swaks
def test_swaks_meets_the_asa_limits(serve):
    """swaks with 101 recipients is cut off at the 101st RCPT; swaks with a
    header line of 999 bytes is cut off in DATA."""
    server = serve("ims55sp4", middlebox="asa-esmtp")
    base = ["swaks", "--server", f"127.0.0.1:{server.port}", "--helo", "client.example", "--from", "a@example.org"]
    many = subprocess.run([*base, "--to", ",".join(f"r{i}@example.test" for i in range(101))],
                          capture_output=True, text=True, timeout=60)
    assert "r99@example.test" in many.stdout and "<-  250 OK - Recipient <r99@example.test>" in many.stdout
    assert "<-  250 OK - Recipient <r100@example.test>" not in many.stdout and many.returncode != 0
    long = subprocess.run([*base, "--to", "b@example.test", "--add-header", "X-Long: " + "h" * 991],
                          capture_output=True, text=True, timeout=60)
    assert long.returncode != 0 and "<-  250 OK\n" not in long.stdout
    assert server.messages == []
