"""
What the two Twisted edges share: a connection's transcript from open to
close, its log line, a core step run with its failure confined to the
connection, and the immediate write to the socket.

L{Edge} is the base of L{emulator.host.protocol.EmulatorProtocol} (a server)
and L{emulator.host.middlebox.MiddleboxProtocol} (a middlebox); both carry
out their core's actions through L{emulator.host.interpreter.Interpreter}.
"""

from __future__ import annotations

import json
import sys
import time

from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from emulator.capture.transcript import Transcript
from emulator.host.interpreter import Interpreter

log = Logger(namespace="emulator")


class EventLog:
    """One line per connection event: through twisted.logger (text), or as
    one JSON object per line on a stream (json), numbers as numbers.

    The line is written at the end of every connection, so it must cost
    little beside a short session (about 250 µs of CPU): going through
    twisted.logger and twistd's text observer costs 20 to 50 µs (the
    publisher, C{string.Formatter}, a time zone per event).  With
    C{direct}, a text line is therefore formatted here, in exactly the form
    twistd's observer gives it (C{TIME [emulator#info] EVENT FIELDS}, the
    time stamp made once per second), and written to C{stream} at once:
    right only where twistd's observer writes to that same stream
    (C{twistd -n} without C{--logfile}, which L{emulator.tap} checks).

    @ivar enabled: false to log nothing (C{--log-connections no}, for load tests).
    """

    def __init__(self, format: str = "text", stream=None, *, direct: bool = False, enabled: bool = True):
        self.format = format
        self.stream = stream or sys.stdout
        self.direct = direct
        self.enabled = enabled
        self._second = -1
        self._stamp = ""

    def emit(self, event: str, /, **fields) -> None:
        if not self.enabled:
            return
        if self.format == "json":
            self.stream.write(json.dumps({"time": time.time(), "level": "info", "namespace": "emulator",
                                          "event": event, **fields}) + "\n")
            self.stream.flush()
            return
        text = " ".join([f"{k}={v:.3f}" if type(v) is float else f"{k}={v}" for k, v in fields.items()])
        if not self.direct:
            log.info("{event} {text}", event=event, text=text)
            return
        line = f"{self._timestamp(time.time())} [emulator#info] {event} {text}"
        self.stream.write(line.replace("\n", "\n\t") + "\n")  # as twistd's observer continues a line
        self.stream.flush()

    def _timestamp(self, now: float) -> str:
        """twistd's time stamp (RFC 3339 in local time, as
        L{twisted.logger.formatTime}), made once per second."""
        second = int(now)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(second))
        return self._stamp


#: Keys the legacy logging bridge adds to every event.
_LEGACY_KEYS = frozenset({"format", "system", "isError", "why", "message", "time"})


def json_observer():
    """twistd's log observer under C{--log-format json} (named by
    L{emulator.tap.Options} as twistd's C{--logger}): every log event,
    twistd's own included, as one JSON object per line on standard output,
    beside the connection lines L{EventLog} writes there.  Its fields:
    C{time}, C{level}, C{namespace}, C{message} (the text a text log would
    show), the event's own fields of JSON types, and C{traceback} for a
    failure.  Written here rather than with C{twisted.logger.jsonFileLogObserver},
    whose records are separated by RS characters and carry every internal
    key of the event."""
    from twisted.logger import formatEvent

    stream = sys.stdout  # the real one: twistd redirects sys.stdout into the log once logging begins
    plain = (str, int, float, bool, type(None))

    def observe(event: dict) -> None:
        level = event.get("log_level")
        record = {"time": event.get("log_time", time.time()), "level": getattr(level, "name", "info"),
                  "namespace": event.get("log_namespace", ""), "message": formatEvent(event)}
        record.update((key, value) for key, value in event.items()
                      if not key.startswith("log_") and key not in _LEGACY_KEYS and key not in record
                      and type(value) in plain)
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        stream.write(json.dumps(record) + "\n")
        stream.flush()

    return observe


class Edge(Protocol, Interpreter):
    """One connection of a Twisted edge.

    The factory provides C{reactor}, C{listener} (its endpoint, for the
    transcript), C{transcripts} (a L{emulator.capture.transcript.TranscriptStore}),
    C{events} (an L{EventLog}) and C{errors} (where exceptions go).

    @cvar what: how the log names a session of this edge.
    """

    what = "session"

    def __init__(self, factory):
        self.factory = factory

    def _open(self, session_id: str, profile: str, now: float, **header) -> tuple[str, int]:
        """Begin the connection's transcript; return the peer's address."""
        # Nagle would hold replies back (about 40 ms after a TLS handshake).
        # TLS wrappers pass setTcpNoDelay through to the TCP transport.
        getattr(self.transport, "setTcpNoDelay", lambda on: None)(True)
        peer = self.transport.getPeer()
        host, port = getattr(peer, "host", "unknown"), getattr(peer, "port", 0)
        self.transcript = Transcript(session_id, profile, f"{host}:{port}", now, self.factory.listener, **header)
        self.factory.transcripts.begin(self.transcript)
        return host, port

    def _finish(self, reason, **fields) -> None:
        """The connection is closed: end and store its transcript, and log
        one line (a log event costs more than a short SMTP session's
        commands): who, what was served (C{fields}), how it ended.  A
        transcript that cannot be written (a full disk) is one error line;
        the memory keeps it whole (L{emulator.capture.transcript.TranscriptStore.finish})."""
        end = _reason(reason)
        self._ended(reason=end)
        try:
            self.factory.transcripts.finish(self.transcript)
        except OSError as e:
            log.error("could not write the transcript of {what} {session}: {error}",
                      what=self.what, session=self.transcript.session_id, error=e)
        self.factory.events.emit("connection", session=self.transcript.session_id, peer=self.transcript.peer,
                                 **fields, end=end)

    def _guard(self, step, *args) -> None:
        """Run a core step and its actions; a bug stays in this connection."""
        try:
            self._run(step(*args))
        except Exception:
            log.failure("internal error in " + self.what + " {session}", session=self.transcript.session_id)
            self._record("internal_error")
            self.factory.errors.append(sys.exc_info()[1])
            self._failed()

    def _failed(self) -> None:
        """What ends a connection after an internal error."""
        self.transport.abortConnection()

    # -- the wire ----------------------------------------------------------

    def _now(self) -> float:
        return self.factory.reactor.seconds()

    def _write(self, data: bytes) -> None:
        self.transport.write(data)

    def _close(self, abort: bool) -> None:
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()


def _reason(reason) -> str:
    value = getattr(reason, "value", reason)
    return f"{type(value).__name__}: {value}" if str(value) else type(value).__name__


# -- the immediate write ------------------------------------------------------


def write_now(transport, data: bytes) -> None:
    """Write C{data} to C{transport}: at once to its socket while nothing
    waits in Twisted's buffer, and what the kernel does not take (or
    everything, on any other transport) through C{transport.write}.

    Why: Twisted's C{write()} always waits for the reactor's next turn,
    which costs two epoll changes, a poll round and a C{doWrite} call per
    reply, about an eighth of a short session's CPU (asyncio's transports
    write at once the same way).  Order is kept: once Twisted holds bytes,
    later ones queue behind them.

    Only plain TCP is written to directly, checked by exact type (a TLS
    wrapper passes attribute lookups through to the TCP transport beneath
    it).  Public API where Twisted has one: the socket is C{getHandle()}
    (C{ISystemHandle}), the state C{connected}, C{disconnecting} and C{TLS}
    (after C{startTLS}, bytes must go through the TLS layer).  Twisted has
    no public way to ask whether its write buffer is empty, so this reads
    C{dataBuffer} and C{_tempDataLen} of
    L{twisted.internet.abstract.FileDescriptor}, here and nowhere else; were
    a Twisted release to drop C{_tempDataLen}, every write would take
    Twisted's path again, and tests/unit/host/test_edge.py would fail.  Any socket
    error sends nothing: C{transport.write} then meets it and reports it the
    usual way, through C{connectionLost}.
    """
    if _plain_and_empty(transport) and not transport.disconnecting:
        try:
            sent = transport.getHandle().send(data)
        except OSError:
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


def closing_with_nothing_left(transport) -> bool:
    """Whether C{transport} is being closed cleanly (C{loseConnection}, not
    C{abortConnection}) with nothing left in Twisted's buffer: all that
    remains is the reactor's next turn closing the socket, and a clean end
    (C{ConnectionDone}) is what it will report.  Plain TCP only, read as in
    L{write_now}."""
    return _plain_and_empty(transport) and transport.disconnecting


def _plain_and_empty(transport) -> bool:
    """A plain, connected TCP transport with nothing in Twisted's write
    buffer (see L{write_now} for the attributes read)."""
    return type(transport) is tcp.Server and not transport.dataBuffer and not getattr(transport, "_tempDataLen", 1) \
        and transport.connected and not transport.TLS
