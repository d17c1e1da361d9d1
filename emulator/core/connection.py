"""
The sans-IO protocol core: bytes in, actions out.

    conn = ServerConnection(server, peer=("127.0.0.1", 40000))
    actions = conn.admit(open_connections) # [] or the refusal (the connection limit)
    actions = conn.connect()              # the greeting
    actions = conn.receive(b"EHLO x\\r\\n") # replies, deliveries, TLS switches
    actions = conn.tls_established(info)  # after the host's handshake
    left = conn.time_left(silent)         # seconds to the phase's timeout (None: none)
    actions = conn.timed_out()            # when left is 0
    actions = conn.connection_lost()

It never imports the reactor, reads the clock or does I/O; everything
time-dependent (the session's date, how long the peer has been silent)
comes in as data, and what to do about it (refuse a connection over the
limit, which timeout applies, what a timeout does) is decided here.  What
differs between products is data too: the verb table of
L{emulator.core.commands} picks handlers by the profile's C{commands:} list,
handlers ask L{ServerConnection.reply} for replies by name, and quirks
(L{emulator.quirks}) bend the rest.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass, field
from typing import Callable

from emulator.core import commands

from emulator.core import replies
from emulator.core.actions import Action, Close, Deliver, Event, Message, Send, StartTLS
from emulator.core.framing import ChunkReader, DataReader
from emulator.core.session import Envelope, Phase, Session
from emulator.core.hooks import hook_table

# Replies that count against the bad-command limit (with every syntax_*).
_BAD_COMMAND_REPLIES = frozenset({"unknown", "line_too_long", "bdat_syntax", "xexch50_syntax"})


# First bytes of a TLS record carrying a handshake (0x16 0x03) or of an
# SSL 2.0-compatible ClientHello (high bit set, message type 1), as 1999's
# Outlook Express sent them (KB Q218430).
def _looks_like_client_hello(data: bytes) -> bool:
    return (data[:2] == b"\x16\x03") or (len(data) >= 3 and data[0] & 0x80 and data[2] == 1)


@dataclass
class Server:
    """What every connection of one listener shares: the profile, the reply
    catalogue rendered for this host name, and cross-connection state.

    C{shared} is memory that outlives a connection (for example the IIS 4.0
    per-peer state of KB Q279214); C{reset()} clears it between tests.
    C{seed} feeds every seeded decision of the quirks (fault probabilities,
    jitter), so a run replays exactly; L{set_faults} adds quirks at run time.

    C{random_bytes(n)} is where the core gets randomness (an NTLM server
    challenge): the host's choice, C{os.urandom} unless a test injects one.

    C{verbs} is this server's copy of the profile's verb table (the handlers
    its C{commands:} pick, MAIL gated when its C{auth:} requires a login).
    """

    profile: "Profile"  # noqa: F821 (emulator.profiles.loader.Profile; no import cycle)
    hostname: str | None = None
    tls_available: bool = False
    shared: dict = field(default_factory=dict)
    seed: int = 0
    random_bytes: Callable[[int], bytes] = os.urandom

    def __post_init__(self):
        self.hostname = self.hostname or self.profile.hostname
        self.constants = {"hostname": self.hostname, "version": self.profile.version}
        self.set_faults(())
        self.tls = self.profile.tls  # an emulator.tls.config.TLSConfig
        self.verbs = dict(self.profile.handlers)
        #: The EHLO list offers BINARYMIME (RFC 3030 section 3): MAIL notes BODY=BINARYMIME.
        self.binarymime = any(k.replace("=", " ").split(" ", 1)[0].upper() == "BINARYMIME"
                              for k in self.profile.ehlo_keywords)
        used = {name: _fields(reply) for name, reply in self.profile.replies.items()}
        self._static = {
            name: replies.render(reply.format(self.constants))
            for name, reply in self.profile.replies.items()
            if used[name] <= self.constants.keys()
        }
        #: Whether any reply shows the session's date (the host formats it only then).
        self.uses_date = any(fields & replies.DATE_FIELDS for fields in used.values())

    @property
    def shortest_timeout(self) -> float | None:
        """The shortest silence any phase allows, in seconds (None: no
        timeouts at all): how often, at most, a host looks at a connection's
        silence (L{ServerConnection.time_left})."""
        limits = self.profile.limits
        candidates = (limits.idle_timeout, limits.data_timeout, self.tls.handshake_timeout)
        return min((c for c in candidates if c), default=None)

    def reset(self) -> None:
        """Forget cross-connection state."""
        self.shared.clear()

    def set_faults(self, faults) -> None:
        """Quirks added at run time, called before the profile's own in every
        hook.  Connections already open use them from their next hook call on:
        the hook table is replaced in one assignment."""
        self.faults = tuple(faults)
        self.hooks = hook_table(self.faults + self.profile.quirks) if self.faults else self.profile.hooks


def _has_long_line(body: bytes, limit: int) -> bool:
    """Whether a line of C{body}, CRLF included, is longer than C{limit}
    bytes (RFC 5321 4.5.3.1.6).  Leaps a window at a time: the last LF in
    the C{limit} bytes from a line's start begins the next line to look at,
    so a message of short lines costs one C{rfind} (memrchr, in C) per
    C{limit} bytes, not one Python step per line."""
    start, size = 0, len(body)
    while size - start >= limit:
        newline = body.rfind(b"\n", start, start + limit)
        if newline == -1:
            return True
        start = newline + 1
    return False


class _Fields(dict):
    """Template values; the loader has checked every name is in replies.FIELDS."""

    def __missing__(self, key: str) -> str:
        return ""


def _fields(reply) -> set[str]:
    return {f for line in reply.lines for _, f, _, _ in string.Formatter().parse(line) if f}


class ServerConnection:
    """One SMTP server connection, driven by the host.

    With C{implicit_tls} (SMTPS), the connection begins with a TLS handshake
    that the host has already started: L{handshaking} until the host calls
    L{tls_established}.
    """

    def __init__(self, server: Server, *, peer: tuple[str, int] = ("127.0.0.1", 0),
                 session_id: str = "s1", date: str = "", local_port: int = 0, implicit_tls: bool = False):
        self.server = server
        self.profile = server.profile
        self.session = Session(session_id, peer[0], peer[1], local_port)
        self.envelope = Envelope()
        self.phase = Phase.COMMAND
        self._fields = {**server.constants, "peer_ip": peer[0], "peer_port": peer[1], **replies.date_fields(date)}
        self._out: list[Action] = []
        self._buffer = bytearray()
        self._discarding = False
        self._data: DataReader | ChunkReader | None = None
        self._data_done: Callable[[bytes], None] | None = None  # what a finished read goes to
        self._line_handler = None
        self._line_limit = 0
        self._ignoring = False
        self.step = ""  # what is being answered: CONNECT, a verb or DATA_END
        self.steps = 0  # how many steps the connection has had
        self._hello_checked = False
        self._implicit_tls = implicit_tls
        self._handshaking = implicit_tls  # a TLS handshake is due or under way

    # -- the host's side -------------------------------------------------

    def admit(self, open_connections: int) -> list[Action]:
        """Whether a new connection is served, with C{open_connections} open
        on its listener (this one included): nothing to do (an empty list;
        go on with L{connect}), or, past the profile's C{limits: connections},
        the actions that turn it away (the C{too_many_connections} reply, as
        quirks transform it, and a close)."""
        limit = self.profile.limits.connections
        if not limit or open_connections <= limit:
            return []
        self.event("limit", name="connections", value=limit)
        self._out.append(Send(self.rendered("too_many_connections", limit=str(limit))))
        self.close()
        return self._flush()

    def connect(self) -> list[Action]:
        """The connection is open: greet."""
        if self._implicit_tls:
            self.event("tls_starting", implicit=True)
        self._begin("CONNECT")
        if not any(q.on_connect(self) for q in self.server.hooks["on_connect"]):
            self.reply("greeting")
        return self._flush()

    def receive(self, data: bytes) -> list[Action]:
        """Bytes from the peer, in whatever pieces the network gave them."""
        if self.phase is Phase.CLOSED or self.phase is Phase.TLS_PENDING or self._ignoring:
            return self._flush()
        if self.phase is Phase.DATA and not self._buffer:
            self._feed_data(data)  # a message's bulk goes straight to its reader, uncopied
        else:
            self._buffer += data
        if not self._hello_checked and len(self._buffer) >= 3:
            # Looked at once, on the first three bytes however they arrived.
            self._hello_checked = True
            if not self.session.counts and _looks_like_client_hello(self._buffer):
                self._client_hello()
                if self._ignoring:
                    self._buffer.clear()
                    return self._flush()
        self._process()
        return self._flush()

    def tls_established(self, info: dict | None = None) -> list[Action]:
        """The handshake the core asked for has completed (RFC 3207 section 4.2:
        the server forgets everything it knew, and a new EHLO is needed)."""
        self._handshaking = False
        session = self.session
        session.tls = True
        session.tls_info = info or {}
        # A cipher weaker than the profile's min_bits does not count as secure.
        session.tls_secure = session.tls_info.get("bits", 0) >= self.server.tls.min_bits
        session.helo = None
        session.esmtp = False
        session.auth_user = None
        self.envelope = Envelope()
        self.phase = Phase.COMMAND
        for quirk in self.server.hooks["after_tls"]:
            quirk.after_tls(self)
        self._process()
        return self._flush()

    @property
    def handshaking(self) -> bool:
        """A TLS handshake is due or under way (after L{StartTLS}, or from
        the start with implicit TLS) and has not completed."""
        return self._handshaking

    def time_left(self, silent: float) -> float | None:
        """The seconds of silence the current phase still allows after
        C{silent} seconds without input (RFC 5321 4.5.3.2): 0 when its
        timeout has come (the host then calls L{timed_out}), None when the
        phase has no timeout.  A TLS handshake has the profile's C{tls:
        handshake_timeout}, message content C{limits: data_timeout}, the rest
        C{limits: idle_timeout}."""
        limits = self.profile.limits
        if self._handshaking:
            limit = self.server.tls.handshake_timeout
        elif self.phase is Phase.DATA:
            limit = limits.data_timeout
        else:
            limit = limits.idle_timeout
        return max(0.0, limit - silent) if limit else None

    def timed_out(self) -> list[Action]:
        """The phase's timeout has come (see L{time_left}).  A handshake is
        given up with a reset; otherwise the server says so if the product
        did, and closes."""
        if self._handshaking:
            self._handshaking = False
            self.event("tls_failed", reason="handshake timeout")
            self.close(abort=True)
            return self._flush()
        self.event("idle_timeout")
        if self.phase is not Phase.CLOSED:
            if "timeout" in self.profile.replies:
                self.reply("timeout")
            self.close()
        return self._flush()

    def connection_lost(self) -> list[Action]:
        """The peer went away (or the host closed the connection): a message
        under way (DATA, or BDAT chunks before LAST) is not delivered."""
        reading = self._data.size if self.phase is Phase.DATA else 0
        if self.phase is Phase.DATA or self.envelope.chunks:
            self.event("message_aborted", bytes=reading + self.envelope.chunk_bytes)
        self.phase = Phase.CLOSED
        return self._flush()

    @property
    def secure(self) -> bool:
        """The session is inside TLS that the server counts as secure."""
        return self.session.tls and self.session.tls_secure

    # -- the handlers' side ----------------------------------------------

    def reply(self, name: str, **fields) -> None:
        """Send the catalogue reply C{name}, its template filled in."""
        if name in _BAD_COMMAND_REPLIES or name.startswith("syntax_"):
            self.session.bad_commands += 1
        static = self.server._static.get(name)
        hooks = self.server.hooks
        if static is not None and not hooks["transform_reply"] and not hooks["shape_reply"]:
            self._out.append(Send(static))
            return
        self.send_reply(self._render(name, fields), name=name)

    def send_reply(self, reply: replies.Reply, *, name: str = "") -> None:
        """Send a reply that is already filled in."""
        actions = [Send(self._transformed(name, reply))]
        for quirk in self.server.hooks["shape_reply"]:
            actions = quirk.shape_reply(self, name, actions)
        self._out.extend(actions)

    def rendered(self, name: str, **fields) -> bytes:
        """The bytes of catalogue reply C{name}, without sending them (quirks
        that transform replies apply; those that shape writes do not)."""
        static = self.server._static.get(name)
        if static is not None and not self.server.hooks["transform_reply"]:
            return static
        return self._transformed(name, self._render(name, fields))

    def _transformed(self, name: str, reply: replies.Reply) -> bytes:
        for quirk in self.server.hooks["transform_reply"]:
            reply = quirk.transform_reply(self, name, reply)
        return replies.render(reply)

    def fill(self, reply: replies.Reply, **fields) -> replies.Reply:
        """A reply template filled in with this connection's fields; a known
        field that this step does not provide (C{{recipient}} in a MAIL reply)
        is empty rather than an error."""
        return reply.format(_Fields(self._fields, **fields))

    def _render(self, name: str, fields: dict) -> replies.Reply:
        return self.fill(self.profile.replies[name], **fields)

    def send(self, action: Action) -> None:
        self._out.append(action)

    def event(self, name: str, /, **fields) -> None:
        self._out.append(Event(name, fields))

    def close(self, abort: bool = False) -> None:
        self.phase = Phase.CLOSED
        self._buffer.clear()
        self._out.append(Close(abort))

    def stall(self) -> None:
        """Answer nothing more and ignore all further input (the host's idle
        timeout still applies)."""
        self._ignoring = True
        self._buffer.clear()

    def start_data(self) -> None:
        """Read a message next (after the handler has sent 354)."""
        self.phase = Phase.DATA
        reader = self._data = DataReader(self.profile.limits.message_size)
        self._data_done = lambda body: self._end_of_data(body, reader)

    def read_chunk(self, size: int, handler: Callable[[bytes], None], keep: bool = True) -> None:
        """Read exactly C{size} bytes next, in bulk and as they are (a BDAT
        chunk, RFC 3030; an XEXCH50 blob, KB 812455), and give them to
        C{handler(chunk)}; at once for 0 bytes.  Without C{keep} they are
        discarded as they arrive (C{handler} gets C{b""}).  The data
        timeout applies meanwhile."""
        reader = ChunkReader(size, keep)
        if reader.done:
            handler(b"")
            return
        self.phase = Phase.DATA
        self._data = reader
        self._data_done = handler

    def expect_line(self, handler, limit: int | None = None) -> None:
        """Give the next input line to C{handler(conn, line)} instead of the
        verb table (a SASL exchange, RFC 4954 section 4).

        C{limit} is the longest such line in bytes, CRLF included (default:
        the command line limit).  A longer line fails the exchange (RFC 4954
        section 4): the handler gets C{line=None} and must not reply, and the
        core answers C{line_too_long} and reads commands again."""
        self.phase = Phase.LINE
        self._line_handler = handler
        self._line_limit = limit or self.profile.limits.command_line

    def start_tls(self) -> None:
        """Switch to TLS after the reply just queued (RFC 3207 section 4).

        Plaintext already received after STARTTLS is discarded unless a quirk
        keeps it: executing it would be the CVE-2011-0411 injection."""
        pending = bytes(self._buffer)
        self._buffer.clear()
        for quirk in self.server.hooks["on_starttls"]:
            self._buffer += quirk.on_starttls(self, pending)
        if pending and not self._buffer:
            self.event("starttls_discarded", bytes=len(pending))
        self.phase = Phase.TLS_PENDING
        self._handshaking = True
        self._out.append(StartTLS())

    def deliver(self, body: bytes) -> None:
        """Hand the finished message to the host and reset the transaction."""
        session = self.session
        session.messages += 1
        queue_id = f"{session.id}.{session.messages}"
        message = Message(
            sender=self.envelope.sender or b"",
            recipients=tuple(self.envelope.recipients),
            data=body,
            peer=f"{session.peer_ip}:{session.peer_port}",
            profile=self.profile.name,
            helo=session.helo or b"",
            tls=session.tls,
            auth_user=session.auth_user,
            session_id=session.id,
        )
        self._out.append(Deliver(
            message,
            accepted=self.rendered("data_ok", queue_id=queue_id),
            failed=self.rendered("data_failed"),
        ))
        self.envelope = Envelope()

    # -- input processing ------------------------------------------------

    def _flush(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _process(self) -> None:
        buffer = self._buffer
        command_limit = self.profile.limits.command_line
        while buffer:
            phase = self.phase
            if phase is Phase.DATA:
                self._feed_data()
                continue
            if phase is not Phase.COMMAND and phase is not Phase.LINE:
                return
            limit = self._line_limit if phase is Phase.LINE else command_limit
            end = buffer.find(b"\n")
            if end == -1:
                if len(buffer) >= limit:
                    self._too_long()
                return
            line = bytes(buffer[:end + 1])
            del buffer[:end + 1]
            if self._discarding:
                self._discarding = False
                continue
            if len(line) > limit:
                self._line_too_long()
                continue
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            if phase is Phase.LINE:
                self.phase = Phase.COMMAND
                if self.step in commands.CREDENTIAL_VERBS:
                    self.event("credentials", verb=self.step, tls=self.session.tls)
                self._line_handler(self, line)
            else:
                self._command(line)
            self._check_errors()

    def _check_errors(self) -> None:
        """Too many bad commands: say so and close (Postfix's hard error limit)."""
        limit = self.profile.limits.bad_commands
        if limit and self.session.bad_commands >= limit and self.phase is not Phase.CLOSED:
            self.event("limit", name="bad_commands", value=limit)
            self.reply("too_many_errors", limit=str(limit))
            self.close()

    def _client_hello(self) -> None:
        """A TLS client on the plaintext port (KB Q218430): record it, and
        ignore it from now on if the product did not respond to it."""
        ignore = self.server.tls.client_hello_on_plaintext == "ignore"
        self.event("tls_client_hello_on_plaintext", action="ignored" if ignore else "processed")
        self._ignoring = ignore

    def _too_long(self) -> None:
        """A line longer than the limit with no end in sight: answer once and
        drop it up to its end (RFC 5321 section 4.5.3.1.4)."""
        self._buffer.clear()
        if not self._discarding:
            self._discarding = True
            self._line_too_long()

    def _line_too_long(self) -> None:
        """Answer an over-long line; one that answers a server prompt also
        ends that exchange (RFC 4954 section 4)."""
        if self.phase is Phase.LINE:
            self.phase = Phase.COMMAND
            handler, self._line_handler = self._line_handler, None
            handler(self, None)
        self.reply("line_too_long")
        self._check_errors()

    def _feed_data(self, data: bytes | None = None) -> None:
        """Input while a message or chunk is read: C{data} straight from the
        network, or (None) what waits in the buffer."""
        if data is None:
            body = self._data.take(self._buffer)
        else:
            body, rest = self._data.feed(data)
            if rest:
                self._buffer += rest
        if body is None:
            return
        self.phase = Phase.COMMAND
        done, self._data_done = self._data_done, None
        done(body)
        if self._data_done is None:
            self._data = None

    def _end_of_data(self, body: bytes, reader: DataReader) -> None:
        """DATA's terminator has come."""
        self.end_message(body, overflow=reader.size if reader.overflow else None)

    def end_message(self, body: bytes, *, overflow: int | None = None, text_lines: bool = True) -> None:
        """A message is complete (DATA's terminator, C{BDAT ... LAST}): the
        quirks that act at its end, then the limits, then delivery.

        @param overflow: the size of a message already found too big.
        @param text_lines: apply C{limits: text_line} (not to a binary body)."""
        self._begin("DATA_END")
        text_line = self.profile.limits.text_line if text_lines else 0
        if any(q.before_data_end(self, body) for q in self.server.hooks["before_data_end"]):
            self.envelope = Envelope()  # a quirk answered: the transaction ends undelivered
        elif overflow is not None:
            self.event("message_rejected", reason="size", bytes=overflow)
            self.envelope = Envelope()
            self.reply("message_too_big", limit=str(self.profile.limits.message_size))
        elif text_line and _has_long_line(body, text_line):
            self.event("message_rejected", reason="text_line", bytes=len(body))
            self.envelope = Envelope()
            self.reply("data_line_too_long", limit=str(self.profile.limits.text_line))
        else:
            self.deliver(body)

    def _command(self, line: bytes) -> None:
        verb_bytes, _, arg = line.partition(b" ")
        verb = verb_bytes.decode("latin-1").upper()
        session = self.session
        session.counts[verb] += 1
        session.commands += 1
        limit = self.profile.limits.commands
        if limit and session.commands > limit:
            self.event("limit", name="commands", value=limit)
            self.reply("too_many_commands", limit=str(limit))
            self.close()
            return
        self._begin(verb)
        if verb in commands.CREDENTIAL_VERBS:
            self.event("credentials", verb=verb, tls=session.tls)
        for quirk in self.server.hooks["before_command"]:
            if quirk.before_command(self, verb, arg):
                return
        handler = self.server.verbs.get(verb)
        if handler is None:
            self.reply("unknown", verb=verb_bytes.decode("latin-1"))
            return
        handler(self, arg)

    def _begin(self, step: str) -> None:
        self.step = step
        self.steps += 1
