"""Replies written straight to the socket (the edge's fast path) over real
TCP on 127.0.0.1: used, and never reordered when the kernel's buffer fills."""

import socket

import pytest

from emulator.host import protocol

pytestmark = pytest.mark.e2e


def test_replies_keep_their_order_when_the_socket_buffer_fills(serve, monkeypatch):
    """A client pipelines thousands of commands and reads nothing until the
    end: the kernel soon takes only part of a reply, or none, so the rest
    queues in Twisted's buffer, and later replies must wait behind it.  Every
    reply arrives once, in order, and both paths were taken."""
    taken = []
    real = protocol.write_now

    def spy(transport, data):
        if "write" not in vars(transport):  # first write: see what goes to Twisted's buffer
            # a small kernel buffer, so that it fills (Linux doubles the figure)
            transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            buffered = transport.write

            def write(rest):
                taken[-1] = False
                buffered(rest)

            transport.write = write
        taken.append(True)  # unless some of it is left to Twisted's buffer
        real(transport, data)

    monkeypatch.setattr(protocol, "write_now", spy)
    server = serve("ims55sp4")
    count, pad = 4000, b"p" * 300  # about 1.3 MB of replies
    commands = b"HELO client.example\r\n" + b"".join(
        b"MAIL FROM:<%s%d@example.org>\r\nRSET\r\n" % (pad, i) for i in range(count)) + b"QUIT\r\n"
    expected = b"".join(b"250 OK - mail from <%s%d@example.org>\r\n250 OK\r\n" % (pad, i) for i in range(count))
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect((server.host, server.port))
        sock.sendall(commands)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    banner, _, rest = received.partition(b"\r\n")
    helo, _, rest = rest.partition(b"\r\n")
    assert banner.startswith(b"220 ") and helo.startswith(b"250 ")
    assert rest.startswith(expected) and rest[len(expected):].startswith(b"221 ")
    assert True in taken and False in taken
