"""The immediate write of the Twisted edge (emulator.host.edge.write_now) on a real TCP
transport over a socket pair, with a reactor that never runs: it writes at once while
Twisted's buffer is empty, queues behind it otherwise, and reads Twisted's private buffer
attributes as this Twisted release defines them (so an upgrade that changes them fails here)."""

import socket

import pytest
from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport

from emulator.host.edge import write_now


@pytest.fixture
def pair():
    """A tcp.Server on one end of a socket pair (its reactor only records), the other end to read."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.settimeout(0)
    reactor = MemoryReactor()
    transport = tcp.Server(ours, Protocol(), ("127.0.0.1", 1), None, 1, reactor)
    yield transport, theirs, reactor
    ours.close()
    theirs.close()


def received(sock) -> bytes:
    try:
        return sock.recv(65536)
    except BlockingIOError:
        return b""


def test_a_reply_goes_to_the_socket_at_once(pair):
    """With Twisted's buffer empty the bytes reach the peer without a reactor turn, and the
    transport never asks the reactor to wait for the socket to be writable."""
    transport, peer, reactor = pair
    write_now(transport, b"250 OK\r\n")
    assert received(peer) == b"250 OK\r\n"
    assert transport not in reactor.getWriters()


def test_a_reply_queues_behind_what_twisted_holds(pair):
    """Once Twisted's own write() holds bytes (C{_tempDataLen}, then C{dataBuffer} after a partial
    doWrite), later bytes wait behind them: nothing overtakes, and the peer reads them in order."""
    transport, peer, reactor = pair
    transport.write(b"first ")
    assert transport._tempDataLen == 6 and transport in reactor.getWriters()
    write_now(transport, b"second")
    assert received(peer) == b""
    transport.doWrite()
    assert received(peer) == b"first second"
    assert not transport.dataBuffer and not transport._tempDataLen
    write_now(transport, b"third")
    assert received(peer) == b"third"


def test_after_starttls_bytes_go_through_the_tls_layer(pair):
    """A transport that has started TLS is written through write(), never to its raw socket."""
    transport, peer, reactor = pair
    writes = []
    transport.TLS = True
    transport.write = writes.append
    write_now(transport, b"secret")
    assert writes == [b"secret"] and received(peer) == b""


def test_other_transports_take_their_own_write():
    """Any transport but plain TCP (a TLS wrapper, the middlebox's in-memory leg, a test's
    StringTransport) is written through its write()."""
    transport = StringTransport()
    write_now(transport, b"220 ready\r\n")
    assert transport.value() == b"220 ready\r\n"
