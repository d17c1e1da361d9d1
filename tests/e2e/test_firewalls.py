"""Middleboxes end to end: real sockets on 127.0.0.1, stdlib smtplib as the
client, the emulated server behind the middlebox in memory, and a real
server process (aiosmtpd) behind `twistd emulator --upstream`."""

import mailbox
import smtplib
import socket
import ssl
import subprocess
import sys
import time

import pytest

from emulator.testing.harness import TWISTD, ReactorThread, free_port, start_server, wait_for_banner

pytestmark = pytest.mark.e2e
MESSAGE = b"Subject: through the firewall\r\n\r\nHello.\r\n"


@pytest.fixture
def running():
    servers = []

    def start(*args, **kwargs):
        servers.append(start_server(*args, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def transcripts(server):
    """A consistent copy of every transcript, taken in the reactor thread."""
    return ReactorThread.call(lambda: [(t, list(t.records)) for t in server.transcripts])


def middlebox_transcript(server):
    return next(t for t, _ in transcripts(server) if t.middlebox)


def wait_for(condition, what, deadline=10.0):
    """Poll until condition() holds; the deadline only bounds the loop."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


def test_q237327_firewall_answers_starttls_and_nothing_is_delivered(running, tmp_path):
    """Exchange 5.5 SP2 advertises STARTTLS; the firewall answers it with 220;
    smtplib's handshake meets the server's plaintext and fails; no message
    is stored, and the server never saw a STARTTLS (KB Q237327)."""
    server = running("ims55sp2-starttls-firewall", maildir=tmp_path / "maildir")
    client = smtplib.SMTP(server.host, server.port, local_hostname="client.example", timeout=10)
    try:
        assert client.ehlo()[0] == 250 and client.has_extn("starttls")
        with pytest.raises(ssl.SSLError):
            client.starttls(context=ssl.create_default_context())
    finally:
        client.close()
    assert server.messages == [] and list((tmp_path / "maildir" / "new").iterdir()) == []
    wait_for(lambda: len(transcripts(server)) == 2 and middlebox_transcript(server).events("closed"),
             "both legs recorded")
    proxy = middlebox_transcript(server)
    assert proxy.events("middlebox_answered")[0].fields == {"reply": "220 Ready to start TLS"}
    upstream = next(t for t, _ in transcripts(server) if t.session_id == proxy.upstream)
    assert upstream.client_bytes().startswith(b"ehlo client.example\r\n\x16\x03")
    assert b"STARTTLS" not in upstream.client_bytes().upper()


def test_pix_mailguard_still_delivers_with_helo(running, tmp_path):
    """smtplib's EHLO is X'd out and refused, it falls back to HELO, and the
    message arrives intact; the client saw the masked banner."""
    server = running("ims55sp4", middlebox="pix-mailguard", maildir=tmp_path / "maildir")
    with smtplib.SMTP(server.host, server.port, local_hostname="client.example", timeout=10) as client:
        assert client.sendmail("a@example.org", ["b@example.test"], MESSAGE) == {}
        assert not client.does_esmtp and client.helo_resp == b"OK"
    (path,) = (tmp_path / "maildir" / "new").iterdir()
    assert path.read_bytes() == MESSAGE
    human = middlebox_transcript(server).human()
    assert "<- 220 ****" in human and "=> XXXX client.example" in human
    assert "<- 500 Unrecognized command" in human


def _converse(sock, line: bytes) -> bytes:
    sock.sendall(line)
    return sock.recv(4096)


def _open_transaction(server):
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert sock.recv(4096).startswith(b"220 ****")
    for line in (b"HELO client.example\r\n", b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<b@example.test>\r\n"):
        assert _converse(sock, line).startswith(b"250 ")
    assert _converse(sock, b"DATA\r\n").startswith(b"354 ")
    return sock


def test_dot_crlf_in_a_separate_segment_never_gets_250(running):
    """CSCds90792 on a real socket: the body ends in one segment, the final
    '.\\r\\n' comes in another; the PIX drops it, so no 250 arrives before the
    client's (short) timeout and nothing is delivered (KB Q295725)."""
    server = running("ims55sp4-pix")
    sock = _open_transaction(server)
    with sock:
        sock.sendall(MESSAGE)
        wait_for(lambda: MESSAGE in middlebox_transcript(server).client_bytes(), "the body read as one segment")
        sock.sendall(b".\r\n")
        sock.settimeout(1.0)
        with pytest.raises(socket.timeout):
            sock.recv(4096)
    assert server.messages == []
    assert middlebox_transcript(server).events("end_of_data_dropped")


def test_dot_crlf_with_the_body_gets_250(running):
    """The same message with CRLF.CRLF in the body's segment is accepted."""
    server = running("ims55sp4-pix")
    with _open_transaction(server) as sock:
        assert _converse(sock, MESSAGE + b".\r\n") == b"250 OK\r\n"
    assert [m.message.data for m in server.messages] == [MESSAGE]


def test_tls_behind_starttls_strip_runs_in_memory_to_the_server(running, tmp_path):
    """The ASA hides STARTTLS; a client that sends it anyway gets a real
    handshake with the emulated server through the tunnel (the in-memory
    server leg does TLS), and the message is delivered inside TLS."""
    server = running("ims55sp4-cert", middlebox="starttls-strip", state_dir=tmp_path / "state")
    context = ssl.create_default_context(cafile=str(server.ca_path))
    with smtplib.SMTP(server.host, server.port, local_hostname="client.example", timeout=10) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        assert client.docmd("STARTTLS")[0] == 220
        client.sock = context.wrap_socket(client.sock, server_hostname="mail.example.test")
        client.file = None
        assert client.ehlo()[0] == 250  # RFC 3207 4.2: a new EHLO inside TLS
        assert client.sendmail("a@example.org", ["b@example.test"], MESSAGE) == {}
    (captured,) = server.messages
    assert captured.message.tls and captured.message.data == MESSAGE
    assert middlebox_transcript(server).events("tunnel")


def test_upstream_that_refuses_closes_the_client(running):
    """Proxy mode with nothing listening upstream: the client connection is
    closed and the transcript says why."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = running("ims55sp4", middlebox="pix-mailguard", upstream=f"tcp:127.0.0.1:{port}")
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        assert sock.recv(4096) == b""
    wait_for(lambda: middlebox_transcript(server).events("closed"), "the client leg closed")
    assert middlebox_transcript(server).events("upstream_failed")


# -- proxy mode: twistd in front of a real server process ------------------


def test_twistd_proxy_mode_in_front_of_aiosmtpd(tmp_path):
    """`twistd emulator --middlebox pix-mailguard --upstream tcp:...` puts the
    emulated PIX in front of a real aiosmtpd process: smtplib sees the masked
    banner, falls back to HELO, and aiosmtpd stores the message; the
    transcript records both legs."""
    pytest.importorskip("aiosmtpd")
    real, proxy = free_port(), free_port()
    mail = tmp_path / "aiosmtpd-mail"
    upstream = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{real}",
                                 "-c", "aiosmtpd.handlers.Mailbox", str(mail)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    firewall = subprocess.Popen([*TWISTD, "--nodaemon",
                                 "--pidfile=", "emulator", "--middlebox", "pix-mailguard",
                                 "--upstream", f"tcp:127.0.0.1:{real}", "--listen", f"tcp:{proxy}",
                                 "--transcripts", "log"],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert not wait_for_banner(real).startswith(b"220 ***")
        banner = wait_for_banner(proxy)
        assert banner.startswith(b"220 ") and set(banner[4:-2]) <= set(b"20*")
        with smtplib.SMTP("127.0.0.1", proxy, local_hostname="client.example", timeout=10) as client:
            assert client.sendmail("a@example.org", ["b@example.test"], MESSAGE) == {}
            assert not client.does_esmtp
    finally:
        firewall.terminate()
        output = firewall.communicate(timeout=20)[0]
        upstream.terminate()
        upstream.communicate(timeout=20)
    (stored,) = mailbox.Maildir(str(mail))
    assert stored["Subject"] == "through the firewall"
    assert "pix-mailguard in front of tcp:127.0.0.1" in output
    from emulator.capture.transcript import read_sessions

    sessions = [t for p in (tmp_path / "log").glob("*.jsonl") for t in read_sessions(p.read_text())[0]]
    session = next(t for t in sessions if t.events("upstream_connected") and b"MAIL" in t.client_bytes().upper())
    assert session.middlebox == "pix-mailguard" and session.upstream == f"tcp:127.0.0.1:{real}"
    human = session.human()
    assert "=> XXXX client.example" in human and "<= 500 " in human and "-> ehlo client.example" in human
