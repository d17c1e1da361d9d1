"""The twistd plugin in a subprocess: `twistd -n emulator --profile ims55sp4`."""

import json
import smtplib
import subprocess
import sys

import pytest

from emulator.capture.transcript import read_sessions
from emulator.testing.harness import TWISTD, free_port, wait_for_banner

pytestmark = pytest.mark.e2e


def twistd(*args, cwd):
    return subprocess.Popen([*TWISTD, "--nodaemon", "--pidfile=", "emulator", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)



def test_twistd_runs_the_profile_and_captures_mail(tmp_path):
    """twistd -n emulator serves ims55sp4 on 127.0.0.1, logs the connection and writes Maildir and transcripts."""
    port = free_port()
    proc = twistd("--profile", "ims55sp4", "--listen", f"tcp:{port}:interface=127.0.0.1",
                  "--maildir", "mail", "--transcripts", "log", cwd=tmp_path)
    try:
        assert wait_for_banner(port).startswith(b"220 mail.example.test ESMTP Server (Microsoft Exchange")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@example.org", ["b@example.test"], b"Subject: x\r\n\r\nbody\r\n")
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 1
    (run,) = (tmp_path / "log").glob("*.jsonl")  # one file per run: the banner probe's session, then smtplib's
    sessions, torn = read_sessions(run.read_text())
    assert len(sessions) == 2 and not torn
    assert f"listening on 127.0.0.1:{port}" in output
    assert "connection session=" in output and "profile=ims55sp4" in output


def test_bad_profile_never_starts_a_server(tmp_path):
    """A bad profile is a one-line usage error naming file and key, and a non-zero exit."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nversion: 5.5\n")
    proc = twistd("--profile", str(bad), cwd=tmp_path)
    output = proc.communicate(timeout=30)[0]
    assert proc.returncode != 0
    assert f"bad profile: {bad}:version: must be a quoted string" in output


@pytest.mark.parametrize("args, message", [
    (["--listen", "tcp:notaport"], "--listen tcp:notaport: port 'notaport': must be a number from 0 to 65535"),
    (["--log-format", "xml"], "--log-format must be text or json"),
    (["--fsync"], "--fsync needs --maildir"),
    (["--hostname", "bad host"], "is not a host name"),
    (["--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
    (["--tls-cert", "nosuch.pem", "--tls-key", "nosuch.key"], "nosuch.pem"),
    (["--listen-tls", "tcp:4650"], "never offered TLS from the first byte"),
    (["--profile", "netscape-ms", "--listen-tls", "tcp:4650", "--tls-cert", "c.pem"], "go together"),
])
def test_bad_option_combinations_are_rejected(tmp_path, args, message):
    """postOptions rejects bad values and combinations before anything listens."""
    proc = twistd(*args, cwd=tmp_path)
    output = proc.communicate(timeout=30)[0]
    assert proc.returncode != 0 and message in output


def test_help_documents_every_option(tmp_path):
    """twistd emulator --help lists each option."""
    result = subprocess.run([*TWISTD, "emulator", "--help"],
                            capture_output=True, text=True, cwd=tmp_path)
    for option in ("--profile=", "--listen=", "--hostname=", "--transcripts=", "--maildir=",
                   "--log-format=", "--fsync", "--tls-cert=", "--tls-key=", "--state-dir=", "--listen-tls="):
        assert option in result.stdout


def test_listen_defaults_to_loopback():
    """An endpoint without an interface binds 127.0.0.1, never all addresses."""
    from emulator.host.endpoints import server_endpoint as loopback_default

    assert loopback_default("2525") == "tcp:2525:interface=127.0.0.1"
    assert loopback_default("tcp:2525") == "tcp:2525:interface=127.0.0.1"
    assert loopback_default("tcp:25:interface=192.0.2.1") == "tcp:25:interface=192.0.2.1"
    assert loopback_default("unix:/tmp/s") == "unix:/tmp/s"


def test_tls_cert_option_gives_sp4_a_working_starttls(tmp_path):
    """--tls-cert/--tls-key (the aiosmtpd/Mailpit/swaks names) bind a certificate: ims55sp4 then
    advertises STARTTLS and smtplib completes it against the user's CA."""
    import ssl

    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("mail.example.test")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "pair.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    port = free_port()
    proc = twistd("--profile", "ims55sp4", "--listen", f"tcp:{port}", "--tls-cert", "pair.pem",
                  "--tls-key", "pair.pem", "--state-dir", "state", cwd=tmp_path)
    try:
        wait_for_banner(port)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client._host = "mail.example.test"
            client.starttls(context=ssl.create_default_context(cafile=str(tmp_path / "ca.pem")))
            client.sendmail("a@example.org", ["b@example.test"], b"Subject: x\r\n\r\nsecure\r\n")
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
    assert f"listening on 127.0.0.1:{port}" in output


def test_start_up_leaves_the_heavy_optional_parts_unimported():
    """What twistd loads to serve the default profile holds neither pyspnego
    (imported on a client's first AUTH NTLM) nor twisted.web (only with
    --api): each would add a tenth or more to the time to the banner."""
    probe = (
        "import json, sys\n"
        "from emulator import tap\n"
        "options = tap.Options()\n"
        "options.parseOptions(['--profile', 'ims55sp4', '--listen', 'tcp:0:interface=127.0.0.1'])\n"
        "tap.makeService(options)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                       check=True).stdout)
    assert not [m for m in loaded if m.startswith(("spnego", "twisted.web", "emulator.auth.ntlm", "emulator.control.api"))]


def test_waiting_for_a_banner_gives_up_after_its_timeout():
    """wait_for_banner on a port nobody listens on raises TimeoutError naming
    the port, rather than waiting for ever."""
    port = free_port()
    with pytest.raises(TimeoutError, match=f"127.0.0.1:{port}"):
        wait_for_banner(port, timeout=0.3)
