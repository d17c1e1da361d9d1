"""Sender personas over real sockets on 127.0.0.1: real TLS (stdlib ssl
against the emulator's pyOpenSSL), real NTLM, and `emulator send`."""

from __future__ import annotations

import socket

import pytest

import local_servers
from emulator import cli
from emulator.sender.profile import Credentials
from emulator.sender.matrix import settle
from emulator.sender.host import send
from emulator.testing.harness import start_server

pytestmark = pytest.mark.e2e
FQDN = "mail.example.test"


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    """One test CA and certificate cache for the module."""
    return tmp_path_factory.mktemp("state")


@pytest.fixture
def serve(state_dir):
    """Start servers on 127.0.0.1 port 0; stop them after the test."""
    running = []

    def start(profile, **kwargs):
        server = start_server(profile, state_dir=state_dir, **kwargs)
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that is bound but not listening: connecting is refused, with no race."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_pre_sp4_w2k_sender_fails_against_ims55sp3_cert_dialling_127_0_0_1(serve):
    """Q273948: the FQDN-only certificate is checked against the dialled 127.0.0.1 and fails; no message."""
    server = serve("ims55sp3-cert")
    result = send("ims55sp3-w2k-sender", server.host, server.port, server_name=FQDN,
                  cafile=str(server.ca_path), timeout=10)
    assert not result.delivered and result.status == 1
    assert result.outcome.failure == "tls_failed"
    assert "certificate for mail.example.test does not match 127.0.0.1 (dialled check)" in result.outcome.error
    human = result.transcript.human()
    assert "=== tls_established version=TLSv1" in human and "~>" not in human
    assert server.messages == []


def test_post_sp4_w2k_sender_delivers_to_ims55sp3_cert(serve):
    """Q273948 fixed in SP4: the certificate is checked against the FQDN; the message goes through inside TLS."""
    server = serve("ims55sp3-cert")
    result = send("ims55sp4-w2k-sender", server.host, server.port, server_name=FQDN,
                  cafile=str(server.ca_path), timeout=10)
    assert result.delivered and result.status == 0
    assert "~> MAIL FROM:<sender@example.org> SIZE=" in result.transcript.human()
    (captured,) = server.messages
    assert captured.message.tls is True


def test_the_chain_is_checked_too(serve):
    """Without --cafile the emulator's test CA is not trusted: the handshake fails for either persona."""
    server = serve("ims55sp3-cert")
    result = send("ims55sp4-w2k-sender", server.host, server.port, server_name=FQDN, timeout=10)
    assert not result.delivered and "certificate verify failed" in result.outcome.error


def test_outlook98_is_refused_where_nothing_listens(closed_port):
    """Q218430: SSL on a port the server does not listen on is refused: Socket Error 10061, 0x800CCC0E."""
    result = send("outlook98", "127.0.0.1", closed_port, timeout=10)
    assert not result.delivered and result.outcome.failure == "refused"
    assert "Socket Error: 10061, Error Number: 0x800CCC0E" in result.outcome.report
    assert "=== connect_failed reason=ConnectionRefusedError" in result.transcript.human()


def test_only_a_refused_connection_gets_the_refused_report(monkeypatch):
    """Another connect error (here: no route) is 'unreachable', without Q218430's 10061 text."""
    import errno

    def no_route(address, timeout=None):
        raise OSError(errno.EHOSTUNREACH, "No route to host")

    monkeypatch.setattr(socket, "create_connection", no_route)
    result = send("outlook98", "127.0.0.1", 465, timeout=5)
    assert result.outcome.failure == "unreachable" and result.outcome.report == ""
    assert "No route to host" in result.outcome.error


def test_outlook98_speaking_ssl_to_the_plaintext_port_fails(serve):
    """Q218430: pointed at the IMS's plaintext port, the SSL client reads the banner as TLS and fails;
    the IMS ignores the ClientHello."""
    server = serve("ims55sp4")
    result = send("outlook98", server.host, server.port, server_name=FQDN, timeout=10)
    assert not result.delivered and result.outcome.failure == "tls_failed"
    human = result.transcript.human()
    assert "=== tls_starting implicit=True\n<- 220 mail.example.test ESMTP Server" in human
    assert server.messages == []
    settle(server)
    (session,) = server.transcripts
    assert session.events("tls_client_hello_on_plaintext")[0].fields == {"action": "ignored"}


def test_outlook98_delivers_over_smtps(serve):
    """Against a server that offers SSL from the first byte (netscape-ms on an SMTPS listener) it delivers."""
    server = serve("netscape-ms", implicit_tls=True)
    result = send("outlook98", server.host, server.port, server_name=FQDN, cafile=str(server.ca_path), timeout=10)
    assert result.delivered
    assert result.transcript.human().startswith("=== tls_starting implicit=True\n=== tls_established")


def test_ims55sp2_sender_authenticates_with_real_ntlm(serve, tmp_path):
    """AUTH NTLM over a socket (issue 5: a shipped ims55sp1/sp2 instead of the stand-in): the server's
    NTLM acceptor verifies pyspnego's AUTHENTICATE; a wrong password is refused."""
    local_servers.register()
    try:
        server = serve(local_servers.ims55sp1_like(tmp_path))
        good = send("ims55sp2-sender", server.host, server.port, credentials=Credentials("tester", "EXAMPLE", "secret"),
                    timeout=10)
        bad = send("ims55sp2-sender", server.host, server.port, credentials=Credentials("tester", "EXAMPLE", "nope"),
                   timeout=10)
    finally:
        local_servers.unregister()
    assert good.delivered and server.messages[0].message.auth_user == "EXAMPLE\\tester"
    assert not bad.delivered and bad.last_reply == "221 closing connection"
    assert "<- 535 Authentication unsuccessful" in bad.transcript.human()


# -- emulator send ------------------------------------------------------------

def run(capsys, *argv):
    status = cli.main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_send_exit_0_when_delivered(serve, capsys, tmp_path):
    """emulator send prints the transcript and exits 0 for a delivered message."""
    server = serve("ims55sp4")
    message = tmp_path / "m.eml"
    message.write_bytes(b"Subject: cli\r\n\r\nbody\r\n")
    status, out, _ = run(capsys, "send", "--persona", "ims55sp2-sender", "--to", f"tcp:{server.host}:{server.port}",
                         "--from", "x@example.org", "--rcpt", "y@example.test", "--rcpt", "z@example.test",
                         "--message", str(message), "--timeout", "10")
    assert status == 0
    assert "-> RCPT TO:<z@example.test> NOTIFY=FAILURE,DELAY" in out
    assert out.endswith("=== result delivered last_reply=221 closing connection\n")
    assert server.messages[0].message.data == message.read_bytes()


def test_send_exit_1_when_not_delivered(closed_port, capsys):
    """Not delivered: exit 1, the reason and the persona's own report."""
    status, out, _ = run(capsys, "send", "--persona", "outlook98", "--to", f"127.0.0.1:{closed_port}")
    assert status == 1
    assert "=== result not delivered (refused)" in out and "=== report The connection to the server has failed" in out


@pytest.mark.parametrize("argv, message", [
    (["--persona", "nosuch", "--to", "127.0.0.1:25"], "no persona of that name"),
    (["--persona", "ims55sp4", "--to", "127.0.0.1:25"], "a server profile cannot be a base"),
])
def test_send_unknown_persona_exits_1(capsys, argv, message):
    """An unknown or unusable persona is one line and exit 1, as an unknown profile is for every command."""
    status, out, err = run(capsys, "send", *argv)
    assert status == 1 and out == ""
    assert err.startswith("emulator send: ") and message in err


@pytest.mark.parametrize("argv, message", [
    (["--persona", "outlook98", "--to", "127.0.0.1:http"], "the port must be a number"),
    (["--persona", "outlook98", "--to", "127.0.0.1:25", "--user", "tester"], "--user and --password go together"),
    (["--persona", "outlook98", "--to", "127.0.0.1:25", "--cafile", "/nonexistent.pem"], "no such file"),
])
def test_send_usage_errors_exit_2(capsys, argv, message):
    """Usage errors exit 2 with one line on stderr, before any connection."""
    status, out, err = run(capsys, "send", *argv)
    assert status == 2 and out == ""
    assert err.startswith("emulator send: ") and message in err


def test_send_user_option_takes_domain_backslash_user(serve, capsys, tmp_path):
    """--user EXAMPLE\\tester --password secret authenticates as that NT account."""
    local_servers.register()
    try:
        server = serve(local_servers.ims55sp1_like(tmp_path))
        status, out, _ = run(capsys, "send", "--persona", "ims55sp2-sender", "--to", f"{server.host}:{server.port}",
                             "--user", "EXAMPLE\\tester", "--password", "secret", "--timeout", "10")
    finally:
        local_servers.unregister()
    assert status == 0 and "=== auth command=AUTH NTLM outcome=ok" in out
    assert server.messages[0].message.auth_user == "EXAMPLE\\tester"
