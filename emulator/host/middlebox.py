"""
The Twisted edge of a middlebox: carries out what L{Relay} asks, between a
client connection and a server leg.

The server leg is either
 - L{EmulatedUpstream}: an emulated profile's L{EmulatorProtocol} in memory,
   on a transport that hands its bytes to the relay (no extra socket; the
   server sees the client's address, as behind a transparent firewall; if
   the server starts TLS, the handshake runs in memory too), or
 - L{EndpointUpstream}: a real server reached through a Twisted client
   endpoint string (C{tcp:HOST:PORT}): proxy mode.

One transcript per connection records both legs (see L{emulator.capture.transcript}).
"""

from __future__ import annotations

import itertools
import time

from twisted.internet import endpoints, error, interfaces
from twisted.internet.defer import CancelledError
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from emulator.capture.transcript import TranscriptStore
from emulator.host.edge import Edge, EventLog, _reason
from emulator.middlebox.relay import Relay

_numbers = itertools.count(1)
_RUN = time.strftime("%Y%m%dT%H%M%S", time.gmtime())


class MiddleboxProtocol(Edge):
    """One client connection through the middlebox; the relay's actions are
    carried out by the one interpreter (L{emulator.host.interpreter}), the
    server leg's through C{leg}."""

    what = "middlebox session"
    relay: Relay

    def __init__(self, factory: "MiddleboxFactory"):
        super().__init__(factory)
        self.leg = None

    # -- the client leg --------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        self.relay = Relay(factory.box)
        self._open(factory.next_session_id(), factory.profile, self._now(), middlebox=factory.box.type)
        self.leg = factory.upstream.connect(self)

    def dataReceived(self, data: bytes) -> None:
        self._received(data)
        self._guard(self.relay.client_data, data)

    def connectionLost(self, reason) -> None:
        self._guard(self.relay.client_closed)
        self._finish(reason, middlebox=self.factory.box.type, upstream=self.factory.upstream.description)

    # -- the server leg's side -------------------------------------------

    def upstream_connected(self, name: str) -> None:
        self.transcript.upstream = name
        self._record("upstream_connected", upstream=name)

    def upstream_data(self, data: bytes) -> None:
        self._received_upstream(data)
        self._guard(self.relay.server_data, data)

    def upstream_lost(self, reason) -> None:
        self._upstream_ended(reason=_reason(reason))
        self._guard(self.relay.server_closed)

    def upstream_failed(self, reason) -> None:
        self._record("upstream_failed", reason=_reason(reason))
        self.transport.loseConnection()

    # -- the wire (see emulator.host.interpreter) -------------------------

    def _send_upstream(self, data: bytes) -> None:
        self.leg.send(data)

    def _close_upstream(self) -> None:
        self.leg.close()

    def _failed(self) -> None:
        self.transport.abortConnection()
        if self.leg is not None:
            self.leg.close()


class MiddleboxFactory(Factory):
    """Builds a L{MiddleboxProtocol} per client connection.

    @ivar box: the middlebox (one instance serves every connection).
    @ivar upstream: an L{EmulatedUpstream} or L{EndpointUpstream}.
    @ivar profile: what the transcripts name as the profile.
    """

    def __init__(self, box, upstream, *, transcripts: TranscriptStore | None = None,
                 events: EventLog | None = None, listener: str = "", profile: str = "", reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.box = box
        self.upstream = upstream
        self.transcripts = transcripts or TranscriptStore()
        self.events = events or EventLog()
        self.listener = listener
        self.profile = profile
        self.reactor = reactor
        self.errors: list[BaseException] = []

    def next_session_id(self) -> str:
        return f"{_RUN}-mb{next(_numbers):06d}"

    def buildProtocol(self, addr) -> MiddleboxProtocol:
        return MiddleboxProtocol(self)


# -- a real server: proxy mode ----------------------------------------------


class EndpointUpstream:
    """A real SMTP server behind the middlebox, reached by a client endpoint
    string such as C{tcp:127.0.0.1:25}."""

    def __init__(self, description: str, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.description = description
        self.endpoint = endpoints.clientFromString(reactor, description)

    def connect(self, middlebox: MiddleboxProtocol) -> "_EndpointLeg":
        return _EndpointLeg(self, middlebox)


class _EndpointLeg:
    """The connection to a real server; bytes wait until it is connected."""

    def __init__(self, upstream: EndpointUpstream, middlebox: MiddleboxProtocol):
        self.middlebox = middlebox
        self.description = upstream.description
        self.transport = None
        self._waiting: list[bytes] = []
        self._closing = False
        self._connecting = endpoints.connectProtocol(upstream.endpoint, _UpstreamProtocol(self))
        self._connecting.addErrback(self._failed)

    def send(self, data: bytes) -> None:
        if self.transport is None:
            self._waiting.append(data)
        else:
            self.transport.write(data)

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.loseConnection()
        else:
            self._connecting.cancel()

    def _connected(self, transport) -> None:
        self.transport = transport
        getattr(transport, "setTcpNoDelay", lambda on: None)(True)
        self.middlebox.upstream_connected(self.description)
        if self._waiting:
            transport.write(b"".join(self._waiting))
            self._waiting = []
        if self._closing:
            transport.loseConnection()

    def _failed(self, failure: Failure) -> None:
        if not failure.check(CancelledError):
            self.middlebox.upstream_failed(failure)


class _UpstreamProtocol(Protocol):
    def __init__(self, leg: _EndpointLeg):
        self.leg = leg

    def connectionMade(self) -> None:
        self.leg._connected(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.leg.middlebox.upstream_data(data)

    def connectionLost(self, reason) -> None:
        self.leg.middlebox.upstream_lost(reason)


# -- an emulated server, in memory ------------------------------------------


class EmulatedUpstream:
    """An emulated profile behind the middlebox: each client connection gets
    its own L{emulator.host.protocol.EmulatorProtocol} from C{factory}, connected
    in memory."""

    def __init__(self, factory):
        self.factory = factory
        self.description = f"profile {factory.server.profile.name}"

    def connect(self, middlebox: MiddleboxProtocol) -> "_MemoryLeg":
        return _MemoryLeg(self.factory, middlebox)


class _MemoryLeg:
    """The middlebox's handle on an in-memory server connection."""

    def __init__(self, factory, middlebox: MiddleboxProtocol):
        self.transport = _ServerTransport(factory.reactor, middlebox)
        protocol = factory.buildProtocol(self.transport.getPeer())
        self.transport.protocol = protocol
        protocol.makeConnection(self.transport)  # the greeting comes back at once
        self.transport.announce()

    def send(self, data: bytes) -> None:
        self.transport.deliver(data)

    def close(self) -> None:
        self.transport.peer_closed()


class _Bypass:
    """What a TLS layer on the server transport writes through: the raw leg."""

    def __init__(self, leg: "_ServerTransport"):
        self._leg = leg

    def write(self, data: bytes) -> None:
        self._leg.raw(data)

    def writeSequence(self, data) -> None:
        self._leg.raw(b"".join(data))

    def loseConnection(self) -> None:
        self._leg.close()

    def abortConnection(self) -> None:
        self._leg.close()

    def __getattr__(self, name):
        return getattr(self._leg, name)


@implementer(interfaces.ITLSTransport)
class _ServerTransport:
    """The transport an emulated server writes to: its bytes go to the
    relay's server side, the relay's bytes for the server come in through
    L{deliver}.  C{startTLS} puts Twisted's memory-BIO TLS layer in between,
    so the server handshakes with whatever the client sends."""

    def __init__(self, reactor, middlebox: MiddleboxProtocol):
        self.reactor = reactor
        self.middlebox = middlebox
        self.client = middlebox.transport
        self.protocol = None
        self.connected = True
        self.disconnecting = False
        self._tls = None
        self._lost = False
        self._announced = False

    # the server's side (ITransport, ITLSTransport)

    def write(self, data: bytes) -> None:
        if self._tls is not None:
            self._tls.write(data)
        else:
            self.raw(data)

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if self._tls is not None:
            self._tls.loseConnection()
        else:
            self.close()

    def abortConnection(self) -> None:
        if self._tls is not None:
            self._tls.abortConnection()
        else:
            self.close()

    def startTLS(self, context, normal: bool = True) -> None:
        factory = TLSMemoryBIOFactory(context, False, None)
        self._tls = factory.protocol(factory, self.protocol, False)
        self._tls.makeConnection(_Bypass(self))

    def getHandle(self):
        return self._tls.getHandle()

    def getPeer(self):
        return self.client.getPeer()

    def getHost(self):
        return self.client.getHost()

    def pauseProducing(self) -> None:
        self.client.pauseProducing()

    def resumeProducing(self) -> None:
        self.client.resumeProducing()

    def stopProducing(self) -> None:
        self.close()

    def registerProducer(self, producer, streaming) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    # the wire

    def announce(self) -> None:
        """Link the middlebox's transcript to the server's session (once)."""
        if not self._announced:
            self._announced = True
            self.middlebox.upstream_connected(self.protocol.transcript.session_id)

    def raw(self, data: bytes) -> None:
        if not self._lost and data:
            self.announce()
            self.middlebox.upstream_data(data)

    def close(self) -> None:
        """The server closes: the peer learns it after this turn of the reactor."""
        if not self.disconnecting:
            self.disconnecting = True
            self.reactor.callLater(0, self._finish, True)

    def _finish(self, tell_middlebox: bool) -> None:
        if self._lost:
            return
        self._lost, self.connected = True, False
        if tell_middlebox:
            self.middlebox.upstream_lost(Failure(error.ConnectionDone()))
        (self._tls or self.protocol).connectionLost(Failure(error.ConnectionDone()))

    # the middlebox's side

    def deliver(self, data: bytes) -> None:
        if not self._lost:
            (self._tls or self.protocol).dataReceived(data)

    def peer_closed(self) -> None:
        self._finish(False)
