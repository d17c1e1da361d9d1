"""
The one interpreter of the sans-IO cores' actions, and the one place where
what happens on a connection becomes its transcript.

Every host of a core carries out its actions through L{Interpreter}: the
Twisted server edge (L{emulator.host.protocol}), the Twisted middlebox edge
(L{emulator.host.middlebox}), and the in-memory harnesses
(L{emulator.testing.harness}, L{emulator.testing.middlebox}).  A host
subclasses it and provides the wire, the C{_write}, C{_close}, ... methods
below; the interpreter decides the order and writes the records, so a
session reads the same in every host:

 - L{Send}: a record of the bytes, then the write (the replies of one
   call, a pipelined group, leave together; a store splits them);
 - L{Deliver}: the store, then C{message_accepted} (with the stored
   message's name where the host has one) and the confirming reply, or
   C{message_not_stored} and the failure reply;
 - L{StartTLS}: C{tls_starting}, then the handshake;
 - L{Event}: the event; L{SendUpstream}: the bytes on the server leg;
 - L{Close}, L{CloseUpstream}, L{Delay}: carried out; a host records how the
   connection ended (L{Interpreter._ended}) when it learns it, which is at
   once in memory and later on a socket.

It imports no Twisted: the in-memory harnesses use it without a reactor.
"""

from __future__ import annotations

from emulator.core.actions import Close, CloseUpstream, Delay, Deliver, Event, Send, SendUpstream, StartTLS


class Interpreter:
    """Carries out a core's actions on one connection and keeps its transcript.

    @ivar transcript: the connection's L{emulator.capture.transcript.Transcript}
        (the host makes it when the connection opens).
    @ivar tls: the bytes on the connection travel inside TLS now (the
        transcript's C{~>} and C{<~}).
    """

    tls = False

    # -- the wire: what a host provides ------------------------------------

    def _now(self) -> float:
        """The time to record (seconds; a harness records 0)."""
        raise NotImplementedError

    def _write(self, data: bytes) -> None:
        """Write to the peer."""
        raise NotImplementedError

    def _close(self, abort: bool) -> None:
        """Close the peer's connection: after pending writes, or at once with a reset."""
        raise NotImplementedError

    def _start_tls(self) -> None:
        """Begin the server side of a TLS handshake with the peer."""
        raise NotImplementedError(type(self).__name__ + " cannot start TLS")

    def _delay(self, seconds: float, rest: list) -> None:
        """Carry out C{rest} after C{seconds}, reading nothing meanwhile."""
        raise NotImplementedError(type(self).__name__ + " cannot delay")

    def _store(self, message) -> str | None:
        """Store an accepted message durably; return its name (None: no name).

        @raise OSError: it could not be stored.
        """
        raise NotImplementedError(type(self).__name__ + " cannot store messages")

    def _send_upstream(self, data: bytes) -> None:
        """Write to the upstream server (a relay's second leg)."""
        raise NotImplementedError(type(self).__name__ + " has no upstream")

    def _close_upstream(self) -> None:
        """Close the upstream server's connection."""
        raise NotImplementedError(type(self).__name__ + " has no upstream")

    # -- what a host saw: recorded here ------------------------------------

    def _received(self, data: bytes) -> float:
        """Bytes from the peer, as they arrived; returns the time recorded."""
        now = self._now()
        self.transcript.received(now, data, self.tls)
        return now

    def _received_upstream(self, data: bytes) -> None:
        """Bytes from the upstream server, as they arrived."""
        self.transcript.server_leg(self._now(), "s", data)

    def _secured(self, info: dict) -> None:
        """The TLS handshake with the peer completed (C{info}: version, cipher, ...)."""
        self.tls = True
        self.transcript.event(self._now(), "tls_established", **info)

    def _ended(self, **fields) -> None:
        """The peer's connection is closed (C{fields}: how, as the host knows it)."""
        self.transcript.event(self._now(), "closed", **fields)

    def _upstream_ended(self, **fields) -> None:
        """The upstream server's connection is closed."""
        self.transcript.event(self._now(), "upstream_closed", **fields)

    def _record(self, name: str, /, **fields) -> None:
        """Any other event the host saw (a refused handshake, an upstream that
        could not be reached, an internal error)."""
        self.transcript.event(self._now(), name, **fields)

    # -- carrying out actions --------------------------------------------

    def _run(self, actions: list) -> None:
        """Carry out C{actions} in order; a L{Delay} holds back the rest.

        The replies of one call (a pipelined group, RFC 2920) leave in one
        write: each is recorded as it comes, and the bytes are written
        together before anything else happens on the connection (a message
        stored, a TLS switch, a close, a delay, the upstream leg) and at the
        end.  So a reply is never held behind a slow store, and a message's
        reply still leaves only once it is stored."""
        transcript = self.transcript
        pending: list[bytes] = []
        try:
            for index, action in enumerate(actions):
                kind = type(action)
                if kind is Send:
                    transcript.sent(self._now(), action.data, self.tls)
                    pending.append(action.data)
                    continue
                if kind is Event:
                    transcript.event(self._now(), action.name, **action.fields)
                    continue
                if pending:
                    data, pending = b"".join(pending), []
                    self._write(data)
                if kind is Deliver:
                    pending.append(self._deliver(action))
                    continue
                if kind is SendUpstream:
                    transcript.server_leg(self._now(), "c", action.data)
                    self._send_upstream(action.data)
                elif kind is StartTLS:
                    transcript.event(self._now(), "tls_starting")
                    self._start_tls()
                elif kind is Close:
                    self._close(action.abort)
                elif kind is CloseUpstream:
                    self._close_upstream()
                elif kind is Delay:
                    self._delay(action.seconds, actions[index + 1:])
                    return
                else:
                    raise TypeError(f"not an action: {action!r}")
        finally:
            # Also when an action fails: what was recorded as sent is sent.
            if pending:
                self._write(b"".join(pending))

    def _deliver(self, action: Deliver) -> bytes:
        """The message is durable before the reply that confirms it is
        written (RFC 5321 section 6.1); one that cannot be stored is refused.
        Returns the reply, recorded, for L{_run} to write."""
        message = action.message
        try:
            name = self._store(message)
        except OSError as e:
            self._record("message_not_stored", error=str(e))
            reply = action.failed
        else:
            named = {} if name is None else {"name": name}
            self._record("message_accepted", **named, bytes=len(message.data), recipients=len(message.recipients))
            reply = action.accepted
        self.transcript.sent(self._now(), reply, self.tls)
        return reply
