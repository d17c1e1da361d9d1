"""Clients that reset the connection at awkward moments: mid-AUTH and mid-TLS-handshake. The session
ends cleanly in the transcript, nothing is raised inside the emulator, and the next client is served."""

import smtplib
import socket
import struct

import pytest

pytestmark = pytest.mark.e2e


def reset(sock):
    """Close with SO_LINGER 0: the peer gets a TCP reset."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def converse(server, *lines):
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.recv(4096)
    for line in lines:
        sock.sendall(line)
        sock.recv(4096)
    return sock


def closed_cleanly(server):
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        assert client.noop()[0] == 250
    assert server.emulation.factories[0].errors == []


def wait_for(predicate):
    from emulator.testing.harness import ReactorThread

    for _ in range(200):
        if ReactorThread.call(predicate):
            return
    raise AssertionError("condition not reached")


def test_reset_mid_auth(serve):
    """AUTH LOGIN answered with the user name, then a reset before the password: the transcript
    records the prompt and the close, and the server goes on."""
    server = serve("ims55sp4")
    sock = converse(server, b"EHLO c\r\n", b"AUTH LOGIN\r\n", b"dGVzdGVy\r\n")
    reset(sock)
    closed_cleanly(server)
    wait_for(lambda: any(t.events("closed") and "-> AUTH LOGIN" in t.human() for t in server.transcripts))
    (session,) = [t for t in server.transcripts if "-> AUTH LOGIN" in t.human()]
    assert "<- 334 UGFzc3dvcmQ6" in session.human()
    assert session.events("closed")[0].fields["reason"].startswith("ConnectionLost: ")  # not a clean close


def test_reset_mid_tls_handshake(serve):
    """STARTTLS, the first bytes of a ClientHello, then a reset: tls_failed names the reason."""
    server = serve("ims55sp4-cert")
    sock = converse(server, b"EHLO c\r\n", b"STARTTLS\r\n")
    sock.sendall(bytes.fromhex("160301020001"))  # a handshake record header and the start of a ClientHello
    reset(sock)
    closed_cleanly(server)
    wait_for(lambda: any(t.events("tls_failed") for t in server.transcripts))
    (failed,) = [e for t in server.transcripts for e in t.events("tls_failed")]
    assert failed.fields["reason"].startswith("ConnectionLost: ")
