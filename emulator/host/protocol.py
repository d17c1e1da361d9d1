"""
The Twisted edge of an emulated server: carries out what the sans-IO core asks.

L{EmulatorProtocol} feeds bytes to L{emulator.core.connection.ServerConnection}
and carries out the actions it returns through the one interpreter
(L{emulator.host.interpreter}): writes, TLS, messages stored before they are
confirmed, the transcript.  What it decides itself is only what needs
Twisted: when to look at the client's silence (the core says which timeout
applies and what a timeout does), how a delay pauses reading, and how to
write to the socket at once (L{emulator.host.edge.write_now}).  Any exception
in the core is confined to its connection: logged with the transcript,
answered with the profile's 451 text and a clean close.
"""

from __future__ import annotations

import itertools
import time
from email.utils import formatdate

from twisted.internet import error, interfaces
from twisted.internet.protocol import Factory
from zope.interface import implementer

from emulator.capture.maildir import MessageStore
from emulator.capture.transcript import TranscriptStore
from emulator.core.actions import Send
from emulator.core.connection import Server, ServerConnection
from emulator.core.session import Phase
from emulator.host.edge import Edge, EventLog, _reason, closing_with_nothing_left, log, write_now
from emulator.tls.context import handshake_info

__all__ = ["EmulatorFactory", "EmulatorProtocol", "EventLog", "log"]

_session_numbers = itertools.count(1)  # unique across the listeners of a process
_RUN = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
#: How a connection the server closed cleanly ends: what Twisted reports for it.
_CLEAN_END = error.ConnectionDone()


@implementer(interfaces.IHandshakeListener)
class EmulatorProtocol(Edge):
    """One client connection to an emulated server.

    Timeouts (RFC 5321 4.5.3.2) use one timer per connection: it fires at
    most C{shortest} seconds apart and asks the core how much silence the
    current phase still allows.  Input only records the time; no timer is
    touched per read, and none is ever moved sooner (which makes the
    reactor search its whole timer list)."""

    conn: ServerConnection

    def __init__(self, factory: "EmulatorFactory"):
        super().__init__(factory)
        self.tls = factory.implicit_tls
        self._pending = None
        self._timer = None
        self._last = 0.0
        self._ended_here = False  # the session was ended (see _run), before Twisted closed the socket

    # -- Twisted's side ----------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        server = factory.server
        now = self._now()
        session_id = factory.next_session_id()
        host, port = self._open(session_id, server.profile.name, now, seed=server.seed)
        self.conn = ServerConnection(server, peer=(host, port), session_id=session_id,
                                     date=factory.date(now) if server.uses_date else "",
                                     local_port=factory.local_port(self.transport),
                                     implicit_tls=factory.implicit_tls)
        factory.open_connections += 1
        refusal = self.conn.admit(factory.open_connections)
        if refusal:
            self._run(refusal)
            return
        self._last = now
        self._watch()
        self._guard(self.conn.connect)

    def dataReceived(self, data: bytes) -> None:
        self._last = self._received(data)
        if self._pending is not None:  # a Delay is running; keep order
            self._pending[1].append(data)
            return
        self._guard(self.conn.receive, data)

    def handshakeCompleted(self) -> None:
        info = handshake_info(self.transport)
        self._last = self._now()
        self._secured(info)
        self._guard(self.conn.tls_established, info)

    def connectionLost(self, reason) -> None:
        self.factory.open_connections -= 1
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self._pending is not None and self._pending[0].active():
            self._pending[0].cancel()
        if not self._ended_here:
            self._end(reason)

    def _end(self, reason) -> None:
        self._ended_here = True
        if self.conn.handshaking:
            self._record("tls_failed", reason=_reason(reason))
        self._guard(self.conn.connection_lost)
        self._finish(reason, profile=self.transcript.profile, messages=self.conn.session.messages,
                     seconds=round(self._now() - self.transcript.started, 3))

    def _run(self, actions: list) -> None:
        """Carry out C{actions}.  If they closed the connection cleanly with
        everything written, and it is the listener's only connection, the
        session ends here: its transcript is stored and its line logged
        before the client sees the close, so a client that connects again
        at once finds the server idle instead of waiting behind this
        session's bookkeeping (connect to banner, client and server on one
        CPU: 113 against 153 µs).  Otherwise (other connections open, bytes
        still buffered for a slow client, an abort, TLS) it ends when
        Twisted reports the connection lost, with Twisted's reason: under
        load, ending early was measured to cost CPU (20 and 200 concurrent
        one-message sessions: 10 and 18% more per session), and a client
        then seldom waits on this one.  docs/performance.md has the runs."""
        super()._run(actions)
        if not self._ended_here and self.factory.open_connections == 1 and self.conn.phase is Phase.CLOSED \
                and closing_with_nothing_left(self.transport):
            self._end(_CLEAN_END)

    # -- timeouts: when to look; the core decides -------------------------

    def _watch(self, after: float | None = None) -> None:
        shortest = self.factory.shortest_timeout
        if shortest is not None:
            self._timer = self.factory.reactor.callLater(shortest if after is None else after, self._check)

    def _check(self) -> None:
        self._timer = None
        left = self.conn.time_left(self._now() - self._last)
        if left == 0:
            self._guard(self.conn.timed_out)
        else:
            shortest = self.factory.shortest_timeout
            self._watch(shortest if left is None else min(left, shortest))

    # -- the wire (see emulator.host.interpreter) -------------------------

    def _write(self, data: bytes) -> None:
        write_now(self.transport, data)

    def _start_tls(self) -> None:
        self.transport.startTLS(self.factory.tls_context)

    def _store(self, message) -> str:
        try:
            return self.factory.store.deliver(message).name
        except OSError as e:
            log.error("could not store a message: {error}", error=e)
            raise

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

    def _failed(self) -> None:
        if self.conn.phase is not Phase.CLOSED:
            self._run([Send(self.conn.rendered("data_failed"))])
            self.conn.close()
        self.transport.loseConnection()


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
        self._local_port: int | None = None  # see local_port()
        self._date = (-1, "")  # see date()
        #: How often, at most, a connection's timer looks at its silence.
        self.shortest_timeout = server.shortest_timeout

    def local_port(self, transport) -> int:
        """The port clients connected to (0 for a Unix socket): the
        listener's, asked of the first connection's socket and remembered,
        since a factory serves one listener (C{getHost} is a system call
        and an address object per connection, the dearest step of a
        connection's set-up)."""
        if self._local_port is None:
            self._local_port = getattr(transport.getHost(), "port", 0)
        return self._local_port

    def date(self, now: float) -> str:
        """C{now} in RFC 5322 form, local time, as replies show a session's
        date: made once per second, not once per connection."""
        second = int(now)
        if second != self._date[0]:
            self._date = (second, formatdate(second, localtime=True))
        return self._date[1]

    def next_session_id(self) -> str:
        return f"{_RUN}-{next(_session_numbers):06d}"

    def buildProtocol(self, addr) -> EmulatorProtocol:
        return EmulatorProtocol(self)
