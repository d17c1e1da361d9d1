"""The Twisted edge in memory: StringTransport and a fake clock, no sockets."""

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from emulator.profiles import loader as profiles
from emulator.capture.maildir import MessageStore
from emulator.host.protocol import EmulatorFactory, EventLog
from emulator.capture.transcript import TranscriptStore
from emulator.core.connection import Server
from hosts import Reactor, _Sink





def connect(tmp_path=None, profile="ims55sp4", events=None):
    reactor = Reactor()
    factory = EmulatorFactory(Server(profiles.load(profile)), reactor=reactor,
                              store=MessageStore(tmp_path / "maildir" if tmp_path else None),
                              transcripts=TranscriptStore(tmp_path / "transcripts" if tmp_path else None),
                              events=events or EventLog("json", stream=_Sink()))
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return reactor, factory, proto, transport





def test_message_is_in_new_before_250_is_written(tmp_path):
    """The Maildir file exists when the 250 that confirms it is written (RFC 5321 6.1)."""
    reactor, factory, proto, transport = connect(tmp_path)
    seen = {}
    write = transport.write

    def spy(data):
        if data == b"250 OK\r\n" and proto.conn.session.messages:
            seen["files"] = list((tmp_path / "maildir" / "new").iterdir())
        write(data)

    transport.write = spy
    proto.dataReceived(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhello\r\n.\r\n")
    (path,) = seen["files"]
    assert path.read_bytes() == b"hello\r\n"
    assert list((tmp_path / "maildir" / "tmp").iterdir()) == []
    import json

    (envelope,) = [json.loads(line) for line in (tmp_path / "maildir" / "envelopes.jsonl").read_text().splitlines()]
    assert envelope["name"] == path.name
    assert (envelope["sender"], envelope["recipients"], envelope["profile"]) == ("a@b", ["c@d"], "ims55sp4")


def test_storage_failure_is_answered_451_and_logged(tmp_path):
    """A message that cannot be written is refused with 451, never 250."""
    reactor, factory, proto, transport = connect(tmp_path)
    (tmp_path / "maildir" / "new").rmdir()
    proto.dataReceived(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n")
    assert transport.value().endswith(b"451 Requested action aborted: local error in processing\r\n")
    assert proto.transcript.events("message_not_stored")


def test_idle_timeout_closes_the_connection():
    """After the profile's idle timeout of silence the server closes (fake clock)."""
    reactor, factory, proto, transport = connect()
    reactor.advance(599)
    assert not transport.disconnecting
    reactor.advance(2)
    assert transport.disconnecting
    assert proto.transcript.events("idle_timeout")


def test_input_resets_the_idle_timer():
    """Each segment from the client restarts the idle timer."""
    reactor, factory, proto, transport = connect()
    reactor.advance(500)
    proto.dataReceived(b"NOOP\r\n")
    reactor.advance(500)
    assert not transport.disconnecting


def test_core_exception_is_confined_to_its_connection(monkeypatch):
    """A bug in the core gives this client a 451 and a clean close, and is recorded."""
    reactor, factory, proto, transport = connect()

    def broken(conn, arg):
        raise RuntimeError("boom")

    monkeypatch.setitem(factory.server.verbs, "NOOP", broken)
    proto.dataReceived(b"NOOP\r\n")
    assert transport.value().endswith(b"451 Requested action aborted: local error in processing\r\n")
    assert transport.disconnecting
    assert isinstance(factory.errors[0], RuntimeError)
    assert proto.transcript.events("internal_error")
    # another connection is unaffected
    _, _, _, other = connect()
    assert other.value().startswith(b"220 ")


def test_transcript_records_segments_and_is_written_on_close(tmp_path):
    """Each read and write is a record; the finished session is a .jsonl file."""
    reactor, factory, proto, transport = connect(tmp_path)
    proto.dataReceived(b"HELO c\r\nNO")
    proto.dataReceived(b"OP\r\n")
    proto.connectionLost(None)
    (path,) = (tmp_path / "transcripts").glob("*.jsonl")
    from emulator.capture.transcript import Transcript

    loaded = Transcript.from_jsonl(path.read_text())
    assert [r.data for r in loaded.records if r.dir == "c"] == [b"HELO c\r\nNO", b"OP\r\n"]
    assert loaded.human().splitlines()[:4] == ["<- 220 mail.example.test ESMTP Server (Microsoft Exchange "
                                               "Internet Mail Service 5.5.2653.13) ready",
                                               "-> HELO c", "-> NO\\", "<- 250 OK"]


def test_each_connection_is_logged():
    """Each connection is one log line when it ends (here a JSON line): session, peer, profile, outcome."""
    sink = _Sink()
    reactor, factory, proto, transport = connect(events=EventLog("json", stream=sink))
    proto.dataReceived(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n")
    assert sink.lines == []
    reactor.advance(1.5)
    proto.connectionLost(None)
    import json

    (event,) = [json.loads(line) for line in sink.lines]
    assert event["event"] == "connection" and event["profile"] == "ims55sp4"
    assert (event["messages"], event["seconds"], event["session"]) == (1, 1.5, proto.transcript.session_id)


@pytest.mark.parametrize("chunks", [[b"NOOP\r\n"], [b"NO", b"OP\r", b"\n"]])
def test_delay_pauses_reading_and_keeps_order(chunks, monkeypatch):
    """A Delay action holds the rest of the actions and later input until it expires."""
    from emulator.core.actions import Delay, Send

    reactor, factory, proto, transport = connect()

    def slow(conn, arg):
        conn.send(Delay(2.0))
        conn.reply("noop")

    monkeypatch.setitem(factory.server.verbs, "NOOP", slow)
    transport.clear()
    for chunk in chunks:
        proto.dataReceived(chunk)
    proto.dataReceived(b"RSET\r\n")
    assert transport.value() == b"" and transport.producerState == "paused"
    reactor.advance(2.0)
    assert transport.value() == b"250 OK\r\n250 OK\r\n"
    assert transport.producerState == "producing"


def test_a_handshake_that_never_completes_is_given_up():
    """A client that says STARTTLS and then never finishes the handshake is cut off after the
    profile's handshake_timeout, and the transcript says why."""
    from zope.interface import implementer
    from twisted.internet.interfaces import ITLSTransport

    @implementer(ITLSTransport)
    class TLSStringTransport(StringTransport):
        def startTLS(self, context):
            self.tls_context = context

        def abortConnection(self):
            self.aborted = True

    reactor = Reactor()
    factory = EmulatorFactory(Server(profiles.load("ims55sp4-cert"), tls_available=True), reactor=reactor,
                              events=EventLog("json", stream=_Sink()), tls_context=object())
    proto = factory.buildProtocol(None)
    transport = TLSStringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b"EHLO c\r\nSTARTTLS\r\n")
    assert transport.tls_context is factory.tls_context
    reactor.advance(29)
    assert not getattr(transport, "aborted", False)
    reactor.advance(2)
    assert transport.aborted
    assert proto.transcript.events("tls_failed")[0].fields == {"reason": "handshake timeout"}


def test_every_session_knows_the_listeners_port_asked_of_the_socket_once():
    """A session's local port is the listener's (StringTransport's host is port 0 here, so a port
    is given explicitly); the factory asks the first connection's socket and every later session
    gets the same port without another getsockname."""
    from twisted.internet.address import IPv4Address

    reactor, factory, proto, transport = connect()
    asked = []

    class Listening(StringTransport):
        def getHost(self):
            asked.append(1)
            return IPv4Address("TCP", "127.0.0.1", 2525)

    factory._local_port = None
    sessions = []
    for _ in range(3):
        proto = factory.buildProtocol(None)
        proto.makeConnection(Listening())
        sessions.append(proto.conn.session.local_port)
    assert sessions == [2525, 2525, 2525] and len(asked) == 1


def _over_a_socket(tmp_path):
    """An EmulatorProtocol on a real tcp.Server over a loopback TCP connection, its reactor
    never running (what Twisted would do next is done by hand), and the client's end to read."""
    import socket
    from types import SimpleNamespace

    from twisted.internet import tcp
    from twisted.internet.testing import MemoryReactorClock

    with socket.create_server(("127.0.0.1", 0)) as listening:
        theirs = socket.create_connection(listening.getsockname(), timeout=2)
        ours, address = listening.accept()
    ours.setblocking(False)
    reactor = MemoryReactorClock()
    factory = EmulatorFactory(Server(profiles.load("ims55sp4")), reactor=reactor,
                              transcripts=TranscriptStore(tmp_path / "transcripts"),
                              events=EventLog("json", stream=_Sink()))
    proto = factory.buildProtocol(None)
    transport = tcp.Server(ours, proto, address, SimpleNamespace(_realPortNumber=address[1]), 1, reactor)
    proto.makeConnection(transport)
    return factory, proto, transport, theirs


def test_a_session_the_server_closes_is_stored_before_the_client_sees_the_close(tmp_path):
    """After QUIT on the listener's only connection, with the 221 already on the wire, the
    session is finished (transcript in the run's file, connection line logged) while the socket
    is still open: a client that reconnects at once does not wait behind this session's
    bookkeeping. Twisted's own report of the close later changes nothing."""
    from twisted.python.failure import Failure

    factory, proto, transport, peer = _over_a_socket(tmp_path)
    proto.dataReceived(b"QUIT\r\n")
    assert peer.recv(4096).endswith(b"221 closing connection\r\n")
    assert transport.disconnecting and transport.connected  # the reactor has not closed it yet
    (stored,), _ = read_sessions_of(factory)
    assert stored.events("closed")[0].fields == {"reason": "ConnectionDone: Connection was closed cleanly."}
    assert len(factory.events.stream.lines) == 1 and not factory.transcripts.open

    transport.connectionLost(Failure(transport.doWrite()))  # the reactor's next turn
    sessions, _ = read_sessions_of(factory)
    assert len(sessions) == 1 and len(sessions[0].events("closed")) == 1
    assert len(factory.events.stream.lines) == 1 and factory.open_connections == 0
    peer.close()


def test_with_other_connections_open_a_session_ends_when_twisted_reports_the_close(tmp_path):
    """Under load (another connection open on the listener) the bookkeeping waits for
    Twisted's close, where it was measured to cost less CPU; the session then ends once,
    with Twisted's reason."""
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    factory, proto, transport, peer = _over_a_socket(tmp_path)
    factory.open_connections += 1  # another client's
    proto.dataReceived(b"QUIT\r\n")
    assert peer.recv(4096).endswith(b"221 closing connection\r\n")
    assert transport.disconnecting and factory.transcripts.open and not factory.events.stream.lines
    transport.connectionLost(Failure(ConnectionDone()))
    (stored,), _ = read_sessions_of(factory)
    assert stored.events("closed")[0].fields == {"reason": "ConnectionDone: Connection was closed cleanly."}
    assert len(factory.events.stream.lines) == 1
    peer.close()


def test_a_close_behind_buffered_bytes_ends_when_twisted_reports_it(tmp_path):
    """While Twisted still holds bytes for the client (a slow reader), the session is not ended
    early: it ends once, when Twisted reports the connection lost, with Twisted's reason."""
    from twisted.internet.error import ConnectionLost
    from twisted.python.failure import Failure

    factory, proto, transport, peer = _over_a_socket(tmp_path)
    transport.write(b"250 held\r\n")  # Twisted's buffer, written at the reactor's next turn
    proto.dataReceived(b"QUIT\r\n")
    assert transport.disconnecting and factory.transcripts.open
    transport.connectionLost(Failure(ConnectionLost("gone")))
    (stored,), _ = read_sessions_of(factory)
    assert stored.events("closed")[0].fields["reason"].startswith("ConnectionLost")
    assert len(factory.events.stream.lines) == 1
    peer.close()


def read_sessions_of(factory):
    from emulator.capture.transcript import read_sessions

    return read_sessions(open(factory.transcripts.path).read())


def test_the_session_date_is_formatted_once_per_second():
    """A banner's date is the connection's second in RFC 5322 local time, exactly as
    email.utils.formatdate gives it; connections within one second share the string made once."""
    from email.utils import formatdate

    reactor, factory, proto, transport = connect()
    first = factory.date(1_700_000_000.25)
    assert first == formatdate(1_700_000_000.25, localtime=True)
    assert factory.date(1_700_000_000.75) is first
    assert factory.date(1_700_000_001.0) == formatdate(1_700_000_001, localtime=True) != first
