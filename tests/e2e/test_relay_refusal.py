"""Relay refusal over real sockets: smtplib, swaks and curl meet each
product's 550 at RCPT through the fixture's local_domains= and relay_from=,
and through `emulator serve --local-domain`."""

import shutil
import smtplib
import subprocess
import sys

import pytest

from emulator.testing.harness import free_port, wait_for_banner

pytestmark = pytest.mark.e2e

BODY = b"Subject: relay\r\n\r\nhello\r\n"


@pytest.mark.legacy_smtp("ims55sp4", local_domains=["example.test"])
def test_smtplib_meets_550_relaying_is_prohibited(legacy_smtp):
    """smtplib: the foreign recipient is refused with 5.5's text (KB Q256856), the local one gets the message."""
    with smtplib.SMTP(legacy_smtp.host, legacy_smtp.port, timeout=10) as client:
        refused = client.sendmail("a@example.org", ["b@example.test", "c@elsewhere.example"], BODY)
    assert refused == {"c@elsewhere.example": (550, b"Relaying is prohibited")}
    (captured,) = legacy_smtp.messages
    assert captured.envelope()["recipients"] == ["b@example.test"]
    with smtplib.SMTP(legacy_smtp.host, legacy_smtp.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("a@example.org", ["c@elsewhere.example"], BODY)


@pytest.mark.legacy_smtp("ims55sp4", local_domains=["example.test"], relay_from=["127.0.0.0/8"])
def test_relay_from_loopback_may_send_anywhere(legacy_smtp):
    """relay_from= covering the test's client (127.0.0.1): every recipient is taken."""
    with smtplib.SMTP(legacy_smtp.host, legacy_smtp.port, timeout=10) as client:
        assert client.sendmail("a@example.org", ["c@elsewhere.example"], BODY) == {}


def test_the_relay_options_make_separate_servers(legacy_smtp):
    """The pool keys servers by the relay options too: the same profile without them takes everything."""
    legacy_smtp.start("ims55sp1", local_domains=["example.test"])
    with smtplib.SMTP(legacy_smtp.host, legacy_smtp.port, timeout=10) as client:
        client.ehlo()
        client.mail("a@example.org")
        assert client.rcpt("c@elsewhere.example") == (550, b"relaying prohibited.")  # KB Q193922
    legacy_smtp.start("ims55sp1")
    with smtplib.SMTP(legacy_smtp.host, legacy_smtp.port, timeout=10) as client:
        assert client.sendmail("a@example.org", ["c@elsewhere.example"], BODY) == {}


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed (apt-get install swaks)")
@pytest.mark.legacy_smtp("ims55sp4", local_domains=["example.test"])
def test_swaks_meets_the_refusal(legacy_smtp):
    """swaks stops at the refused RCPT and prints the server's line; nothing is delivered."""
    result = subprocess.run(["swaks", "--server", f"{legacy_smtp.host}:{legacy_smtp.port}", "--from",
                             "a@example.org", "--to", "c@elsewhere.example", "--timeout", "10"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "<** 550 Relaying is prohibited" in result.stdout + result.stderr
    assert legacy_smtp.messages == []


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_meets_the_refusal_through_emulator_serve(tmp_path):
    """curl against `emulator serve --profile ex50 --local-domain example.test`: the foreign recipient is
    curl's error with the server's 550; a local one is delivered."""
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "emulator.cli", "serve", "--profile", "ex50", "--listen",
                               f"tcp:{port}", "--local-domain", "example.test", "--state-dir", str(tmp_path)],
                              stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        wait_for_banner(port)
        message = tmp_path / "message.eml"
        message.write_bytes(BODY)
        result = subprocess.run(["curl", "-sS", f"smtp://127.0.0.1:{port}", "--mail-from", "a@example.org",
                                 "--mail-rcpt", "c@elsewhere.example", "--upload-file", str(message)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and "550" in result.stderr
        ok = subprocess.run(["curl", "-sS", f"smtp://127.0.0.1:{port}", "--mail-from", "a@example.org",
                             "--mail-rcpt", "b@example.test", "--upload-file", str(message)],
                            capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
