"""
The Twisted edge: carries out what the sans-IO core asks.

L{EmulatorProtocol} feeds bytes to L{emulator.core.connection.ServerConnection}, writes
what it returns, starts TLS, stores messages before confirming them, keeps
the transcript, and enforces the idle timeout.  Any exception in the core is
confined to its connection: logged with the transcript, answered with the
profile's 451 text and a clean close.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from email.utils import formatdate

from twisted.internet import interfaces, tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from emulator.core.actions import Close, Delay, Deliver, Event, Send, StartTLS
from emulator.capture.maildir import MessageStore
from emulator.core.session import Phase
from emulator.tls.context import handshake_info
from emulator.capture.transcript import Transcript, TranscriptStore
from emulator.core.connection import Server, ServerConnection

log = Logger(namespace="emulator")
_session_numbers = itertools.count(1)  # unique across the listeners of a process
_RUN = time.strftime("%Y%m%dT%H%M%S", time.gmtime())


class EventLog:
    """One line per connection event: through twisted.logger (text), or as
    one JSON object per line on a stream (json)."""

    def __init__(self, format: str = "text", stream=None):
        self.format = format
        self.stream = stream or sys.stdout

    def emit(self, event: str, /, **fields) -> None:
        if self.format == "json":
            self.stream.write(json.dumps({"time": time.time(), "event": event, **fields}) + "\n")
            self.stream.flush()
        else:
            text = " ".join(f"{k}={v}" for k, v in fields.items())
            log.info("{event} {text}", event=event, text=text)


@implementer(interfaces.IHandshakeListener)
class EmulatorProtocol(Protocol):
    """One client connection to an emulated server.

    Timeouts (RFC 5321 4.5.3.2) use one timer per connection: it fires at
    most C{shortest} seconds apart and compares the silence since the last
    input with the limit of the current phase (TLS handshake, DATA, or
    between commands).  Input only records the time; no timer is touched per
    read, and none is ever moved sooner (which makes the reactor search its
    whole timer list)."""

    conn: ServerConnection
    transcript: Transcript

    def __init__(self, factory: "EmulatorFactory"):
        self.factory = factory
        self._tls = factory.implicit_tls
        self._handshaking = factory.implicit_tls
        self._pending = None
        self._timer = None
        self._last = 0.0
        self._direct = False

    # -- Twisted's side ----------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        # Nagle would hold replies back (about 40 ms after a TLS handshake).
        # TLS wrappers pass setTcpNoDelay through to the TCP transport.
        getattr(self.transport, "setTcpNoDelay", lambda on: None)(True)
        self._direct = _can_write_directly(self.transport)
        peer = self.transport.getPeer()
        host, port = getattr(peer, "host", "unknown"), getattr(peer, "port", 0)
        now = factory.reactor.seconds()
        session_id = factory.next_session_id()
        self.transcript = Transcript(session_id, factory.server.profile.name, f"{host}:{port}",
                                     now, factory.listener, seed=factory.server.seed)
        factory.transcripts.begin(self.transcript)
        self.conn = ServerConnection(factory.server, peer=(host, port), session_id=session_id,
                                     date=formatdate(now, localtime=True) if factory.server.uses_date else "",
                                     local_port=getattr(self.transport.getHost(), "port", 0))
        factory.open_connections += 1
        limits = factory.server.profile.limits
        if limits.connections and factory.open_connections > limits.connections:
            self.transcript.event(now, "limit", name="connections", value=limits.connections)
            self._write(self.conn.rendered("too_many_connections", limit=str(limits.connections)))
            self.conn.close()
            self.transport.loseConnection()
            return
        self._last = now
        self._watch()
        if self._handshaking:
            self.transcript.event(now, "tls_starting", implicit=True)
        self._guard(self.conn.connect)

    def dataReceived(self, data: bytes) -> None:
        self._last = now = self._now()
        self.transcript.received(now, data, self._tls)
        if self._pending is not None:  # a Delay is running; keep order
            self._pending[1].append(data)
            return
        self._guard(self.conn.receive, data)

    def handshakeCompleted(self) -> None:
        info = handshake_info(self.transport)
        self._tls, self._handshaking = True, False
        self._last = self._now()
        self.transcript.event(self._now(), "tls_established", **info)
        self._guard(self.conn.tls_established, info)

    # -- timeouts ---------------------------------------------------------

    def _limit(self) -> float | None:
        """The silence allowed in the current phase, in seconds (None: no limit)."""
        limits = self.factory.server.profile.limits
        if self._handshaking:
            return self.factory.server.tls.handshake_timeout or None
        if self.conn.phase is Phase.DATA:
            return limits.data_timeout or None
        return limits.idle_timeout or None

    def _watch(self, after: float | None = None) -> None:
        shortest = self.factory.shortest_timeout
        if shortest is not None:
            self._timer = self.factory.reactor.callLater(shortest if after is None else after, self._check)

    def _check(self) -> None:
        self._timer = None
        limit = self._limit()
        silent = self._now() - self._last
        if limit is not None and silent >= limit:
            self.timeoutConnection()
        else:
            left = self.factory.shortest_timeout if limit is None else limit - silent
            self._watch(min(left, self.factory.shortest_timeout))

    def timeoutConnection(self) -> None:
        if self._handshaking:
            self.transcript.event(self._now(), "tls_failed", reason="handshake timeout")
            self.transport.abortConnection()
            return
        self.transcript.event(self._now(), "idle_timeout")
        self._guard(self.conn.timed_out)

    def connectionLost(self, reason) -> None:
        self.factory.open_connections -= 1
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self._pending is not None and self._pending[0].active():
            self._pending[0].cancel()
        now = self._now()
        if self._handshaking and not self.transcript.events("tls_failed"):
            self.transcript.event(now, "tls_failed", reason=_reason(reason))
        self._guard(self.conn.connection_lost)
        self.transcript.event(now, "closed", reason=_reason(reason))
        self.factory.transcripts.finish(self.transcript)
        # One line per connection, when it ends (a log event costs more than
        # a short SMTP session's commands): who, which profile, what came of it.
        self.factory.events.emit("connection", session=self.transcript.session_id, peer=self.transcript.peer,
                                 profile=self.transcript.profile, messages=self.conn.session.messages,
                                 seconds=f"{now - self.transcript.started:.3f}", end=_reason(reason))

    # -- carrying out actions --------------------------------------------

    def _guard(self, step, *args) -> None:
        """Run a core step and its actions; a bug stays in this connection."""
        try:
            self._run(step(*args))
        except Exception:
            log.failure("internal error in session {session}", session=self.transcript.session_id)
            self.transcript.event(self._now(), "internal_error")
            self.factory.errors.append(sys.exc_info()[1])
            if self.conn.phase is not Phase.CLOSED:
                self._write(self.conn.rendered("data_failed"))
                self.conn.close()
            self.transport.loseConnection()

    def _run(self, actions: list) -> None:
        for index, action in enumerate(actions):
            kind = type(action)
            if kind is Send:
                self._write(action.data)
            elif kind is Deliver:
                self._deliver(action)
            elif kind is Event:
                self.transcript.event(self._now(), action.name, **action.fields)
            elif kind is StartTLS:
                self.transcript.event(self._now(), "tls_starting")
                self._handshaking = True
                self.transport.startTLS(self.factory.tls_context)
            elif kind is Close:
                if action.abort:
                    self.transport.abortConnection()
                else:
                    self.transport.loseConnection()
            elif kind is Delay:
                self._delay(action.seconds, actions[index + 1:])
                return

    def _delay(self, seconds: float, rest: list) -> None:
        self.transport.pauseProducing()
        # Start the wait one reactor turn later, so that the reactor writes
        # what came before first: the writes either side of a Delay, even
        # Delay(0), then leave as separate TCP writes (a split reply).
        deadline = self._now() + seconds
        self._pending = [self.factory.reactor.callLater(0, self._wait, deadline), [], rest]

    def _wait(self, deadline: float) -> None:
        self._pending[0] = self.factory.reactor.callLater(max(0.0, deadline - self._now()), self._resume)

    def _resume(self) -> None:
        _, received, rest = self._pending
        self._pending = None
        self.transport.resumeProducing()
        self._run(rest)
        for data in received:
            self._guard(self.conn.receive, data)

    def _write(self, data: bytes) -> None:
        self.transcript.sent(self._now(), data, self._tls)
        transport = self.transport
        if self._direct and not transport.dataBuffer and not transport._tempDataLen \
                and transport.connected and not transport.disconnecting and not transport.TLS:
            data = data[_send_now(transport.socket, data):]
            if not data:
                return
        transport.write(data)

    def _deliver(self, action: Deliver) -> None:
        try:
            captured = self.factory.store.deliver(action.message)
        except OSError as e:
            log.error("could not store a message: {error}", error=e)
            self.transcript.event(self._now(), "message_not_stored", error=str(e))
            self._write(action.failed)
            return
        self.transcript.event(self._now(), "message_accepted", name=captured.name,
                              bytes=len(action.message.data),
                              recipients=len(action.message.recipients))
        self._write(action.accepted)

    def _now(self) -> float:
        return self.factory.reactor.seconds()


#: Transports whose socket a reply may be written to at once, while nothing
#: waits in their buffer: plain TCP, checked by exact type (a TLS wrapper
#: passes attribute lookups through to the TCP transport beneath it).
#: Twisted's own write() always waits for the reactor's next turn, which
#: costs two epoll changes, a poll round and a doWrite call per reply: about
#: an eighth of a short session's CPU.  asyncio's transports write at once
#: the same way.  The buffer's attributes are Twisted's own; were they to
#: change, every write would take Twisted's path again.
_DIRECT_TRANSPORTS = (tcp.Server,)
_BUFFER_ATTRIBUTES = ("dataBuffer", "_tempDataLen", "connected", "disconnecting", "TLS", "socket")


def _can_write_directly(transport) -> bool:
    return type(transport) in _DIRECT_TRANSPORTS and all(hasattr(transport, a) for a in _BUFFER_ATTRIBUTES)


def _send_now(sock, data: bytes) -> int:
    """Send what the kernel takes of C{data} without waiting; return how
    many bytes it took.  Any error (a full socket buffer, a reset) sends
    nothing: the transport's buffered write then meets it and reports it
    the usual way, through connectionLost."""
    try:
        return sock.send(data)
    except OSError:
        return 0


def _reason(reason) -> str:
    value = getattr(reason, "value", reason)
    return f"{type(value).__name__}: {value}" if str(value) else type(value).__name__


class EmulatorFactory(Factory):
    """Builds a protocol per connection, sharing one L{Server}, the message
    store and the transcript store."""

    noisy = False  # the listener logs "listening on ..." itself

    def __init__(self, server: Server, *, store: MessageStore | None = None,
                 transcripts: TranscriptStore | None = None, events: EventLog | None = None,
                 tls_context=None, implicit_tls: bool = False, listener: str = "", reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.server = server
        self.store = store or MessageStore()
        self.transcripts = transcripts or TranscriptStore()
        self.events = events or EventLog()
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.listener = listener
        self.reactor = reactor
        self.errors: list[BaseException] = []
        self.open_connections = 0
        limits = server.profile.limits
        candidates = [limits.idle_timeout, limits.data_timeout, server.tls.handshake_timeout]
        #: How often, at most, a connection's timer looks at its silence.
        self.shortest_timeout = min((c for c in candidates if c), default=None)

    def next_session_id(self) -> str:
        return f"{_RUN}-{next(_session_numbers):06d}"

    def buildProtocol(self, addr) -> EmulatorProtocol:
        return EmulatorProtocol(self)
