"""End-to-end logins over real sockets: stdlib smtplib, with pyspnego as the NTLM client."""

import base64
import smtplib
import subprocess
import sys

import pytest
import spnego


pytestmark = pytest.mark.e2e


def ntlm_login(client: smtplib.SMTP, verb: str, user="EXAMPLE\\tester", password="secret"):
    """'<verb> NTLM <NEGOTIATE>', then the AUTHENTICATE for the 334 CHALLENGE; the final (code, text)."""
    ntlm = spnego.client(user, password, hostname="mail.example.test", protocol="ntlm",
                         options=spnego.NegotiateOptions.use_ntlm)
    code, challenge = client.docmd(verb, "NTLM " + base64.b64encode(ntlm.step()).decode())
    assert code == 334, challenge
    return client.docmd(base64.b64encode(ntlm.step(base64.b64decode(challenge))).decode())


def auth_events(server):
    return [r.fields for t in server.transcripts for r in t.events("auth")]


def test_auth_ntlm_against_ims55sp2(serve):
    """pyspnego's NTLM through smtplib's AUTH NTLM logs in to ims55sp2, and mail is sent as that user."""
    server = serve("ims55sp2")
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.ehlo("client.example")
        assert ntlm_login(client, "AUTH") == (235, b"ntlm authentication successful")
        client.sendmail("a@example.org", ["b@example.test"], b"Subject: ntlm\r\n\r\nhi\r\n")
    (captured,) = server.messages
    assert captured.message.auth_user == "EXAMPLE\\tester"


def test_xauth_ntlm_against_ex50(serve):
    """The same NTLM exchange through XAUTH logs in to ex50; AUTH there is unknown."""
    server = serve("ex50")
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.ehlo("client.example")
        assert client.has_extn("xauth") and not client.has_extn("auth")
        assert client.docmd("AUTH", "NTLM")[0] == 500
        assert ntlm_login(client, "XAUTH") == (235, b"ntlm authentication successful")
    assert auth_events(server)[0]["outcome"] == "success"


def test_smtplib_login_against_ims55sp4(serve):
    """smtplib.login() picks AUTH LOGIN from the EHLO list and succeeds; a wrong password raises 535."""
    server = serve("ims55sp4")
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        assert client.login("tester", "secret") == (235, b"LOGIN authentication successful")
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            client.login("tester", "wrong")
        assert info.value.smtp_code == 535
    outcomes = sorted(e["outcome"] for e in auth_events(server))
    assert outcomes == ["failure", "success"]


def test_start_server_accounts(serve):
    """start_server(accounts=...) adds accounts, for LOGIN and NTLM alike."""
    server = serve("ims55sp3", accounts=["CORP\\alice:Wonder-land1"])
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        assert client.login("CORP\\alice", "Wonder-land1")[0] == 235
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.ehlo()
        assert ntlm_login(client, "AUTH", "CORP\\alice", "Wonder-land1")[0] == 235


def test_twistd_account_option(tmp_path):
    """twistd emulator --account 'CORP\\alice:pw' serves a profile in which alice can log in, and
    never logs the password."""
    command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--nodaemon", "--pidfile=",
               "emulator", "--profile", "ims55sp4", "--listen", "tcp:0:interface=127.0.0.1",
               "--account", "CORP\\alice:Sekr1t"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = []
    try:
        for log_line in proc.stdout:
            log.append(log_line)  # twistd says where it listens: "listening on 127.0.0.1:PORT (...)"
            if "listening on 127.0.0.1:" in log_line:
                port = int(log_line.split("listening on 127.0.0.1:")[1].split()[0])
                break
        else:
            pytest.fail("twistd never listened")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            assert client.login("CORP\\alice", "Sekr1t")[0] == 235
    finally:
        proc.terminate()
        log.append(proc.communicate(timeout=20)[0])
    assert "connection session=" in "".join(log) and "Sekr1t" not in "".join(log)
