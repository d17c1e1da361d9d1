"""End-to-end with real sockets on 127.0.0.1 and stdlib smtplib."""

import smtplib

import pytest

from emulator.testing.harness import start_server

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path):
    running = start_server("ims55sp4", maildir=tmp_path / "maildir", transcripts=tmp_path / "transcripts")
    yield running
    running.stop()


def test_smtplib_sends_a_message_into_the_maildir(server, tmp_path):
    """smtplib's sendmail is accepted; the Maildir holds the exact bytes and the transcript the session."""
    body = b"Subject: e2e\r\n\r\nHello from smtplib.\r\n.leading dot\r\n"
    with smtplib.SMTP(server.host, server.port, local_hostname="client.example", timeout=10) as client:
        code, banner = client.ehlo()
        assert code == 250 and b"SIZE 0" in banner
        assert client.sendmail("a@example.org", ["b@example.test", "c@example.test"], body) == {}
    (path,) = (tmp_path / "maildir" / "new").iterdir()
    assert path.read_bytes() == body
    (captured,) = server.messages
    assert captured.message.recipients == (b"b@example.test", b"c@example.test")
    assert captured.message.helo == b"client.example"
    session = next(t for t in server.transcripts if t.events("message_accepted"))
    human = session.human()
    assert f"-> mail FROM:<a@example.org> size={len(body)}" in human  # smtplib's own spelling
    assert "<- 354 Send data.  End with CRLF.CRLF" in human
    assert "-> ..leading dot" in human


def test_tcp_nodelay_is_set(server):
    """Every connection has TCP_NODELAY (Nagle would stall replies after a TLS handshake)."""
    import socket

    from emulator.testing.harness import ReactorThread

    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.noop()

        def flags():
            from twisted.internet import reactor, tcp

            return [r.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                    for r in reactor.getReaders() if isinstance(r, tcp.Server) and r.getHost().port == server.port]

        assert ReactorThread.call(flags) == [1]
