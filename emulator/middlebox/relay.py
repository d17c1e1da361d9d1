"""
The sans-IO relay of one connection through a middlebox: bytes in from each
side, bytes out to each side.

    relay = Relay(box)
    relay.server_data(b"220 ...\\r\\n")   # -> [Send(b"220 ****...\\r\\n")]
    relay.client_data(b"EHLO x\\r\\n")    # -> [Event(...), SendUpstream(b"XXXX x\\r\\n")]
    relay.client_closed()                # -> [CloseUpstream()]

It follows the SMTP dialogue as an inspecting firewall does: client input is
cut into command lines, server replies are matched to the commands they
answer (the first one is the greeting), the message after a C{354} reply to
C{DATA} passes segment by segment until CRLF.CRLF, and after a successful
C{STARTTLS} (or when the middlebox calls L{Relay.tunnel}) bytes pass
unexamined both ways.  The middlebox type's hooks decide what is rewritten;
a hook may also drop the connection (L{Relay.drop}), as an inspecting
firewall's C{drop-connection} does.
Like L{emulator.core.connection}, it never touches a socket, a clock or a file.

Its actions are the core's (L{emulator.core.actions}): the client is the
peer the host serves, so what goes to it is L{Send} and L{Close}, as from a
server; only the server leg has actions of its own, L{SendUpstream} and
L{CloseUpstream}.
"""

from __future__ import annotations

from collections import deque

from emulator.core.actions import Close, CloseUpstream, Event, Send, SendUpstream

END_OF_DATA = b"\r\n.\r\n"
GREETING = None  # what the first server reply answers
LINE_LIMIT = 4096  # bytes without a line end after which a partial command is judged as it is


class Relay:
    """One connection through a middlebox.

    @ivar phase: C{command}, C{await_data} (DATA sent, its reply not yet
        seen), C{data} (message content), C{tunnel} (bytes pass unexamined)
        or C{dropped} (both connections closed by the middlebox).
    @ivar notes: per-connection scratch for the middlebox type.
    """

    def __init__(self, box):
        self.box = box
        self.phase = "command"
        self.notes: dict = {}
        self._out: list = []
        self._client = bytearray()  # a command line not yet complete
        self._held: list[bytes] = []  # client segments waiting for the reply to DATA
        self._server = bytearray()  # a reply line not yet complete
        self._reply: list[bytes] = []  # lines of a multi-line reply so far
        self._answers: deque[str | None] = deque([GREETING])  # what each coming reply answers
        self._tail = b""  # the last bytes of message content passed

    # -- the host's side -------------------------------------------------

    def client_data(self, data: bytes) -> list:
        """A segment from the client, as the network delivered it."""
        self._segment(data)
        return self._flush()

    def _segment(self, data: bytes) -> None:
        if self.phase == "dropped":
            return
        if self.phase == "tunnel":
            self._to_server(data)
        elif self.phase == "await_data":
            self._held.append(data)
        elif self.phase == "data":
            self._content(data)
        else:
            self._commands(data)

    def server_data(self, data: bytes) -> list:
        """A segment from the server."""
        if self.phase == "dropped":
            return self._flush()
        if self.phase == "tunnel":
            self._to_client(data)
            return self._flush()
        self._server += data
        while self.phase not in ("tunnel", "dropped"):
            end = self._server.find(b"\n")
            if end == -1:
                break
            line = bytes(self._server[:end + 1])
            del self._server[:end + 1]
            self._reply.append(line)
            if line[3:4] != b"-":  # the last line of a reply (RFC 5321 4.2.1)
                self._replied(b"".join(self._reply))
                self._reply = []
        if self.phase == "tunnel" and (self._reply or self._server):
            self._to_client(b"".join(self._reply) + bytes(self._server))
            self._reply, self._server = [], bytearray()
        return self._flush()

    def client_closed(self) -> list:
        """The client went away: so does the server connection."""
        if self.phase != "dropped":
            self._out.append(CloseUpstream())
        return self._flush()

    def server_closed(self) -> list:
        """The server went away: pass what is left of its bytes, then close."""
        if self.phase == "dropped":
            return self._flush()
        rest = b"".join(self._reply) + bytes(self._server)
        self._reply, self._server = [], bytearray()
        if rest:
            self._to_client(rest)
        self._out.append(Close())
        return self._flush()

    # -- the middlebox type's side ---------------------------------------

    def answer(self, reply: bytes) -> None:
        """Answer the client in the middlebox's own name."""
        self.event("middlebox_answered", reply=reply.decode("latin-1").rstrip("\r\n"))
        self._to_client(reply)

    def tunnel(self) -> None:
        """From now on pass bytes both ways unexamined (as after a TLS
        handshake, whose bytes a firewall cannot read)."""
        if self.phase != "tunnel":
            self.phase = "tunnel"
            self.event("tunnel")

    def drop(self, reason: str, /, **fields) -> None:
        """Close both connections and pass nothing more: the bytes that
        caused it never reach the server (an ASA's C{drop-connection})."""
        if self.phase != "dropped":
            self.phase = "dropped"
            self.event("connection_dropped", reason=reason, **fields)
            self._out += [Close(), CloseUpstream()]

    def event(self, name: str, /, **fields) -> None:
        self._out.append(Event(name, fields))

    # -- client input ----------------------------------------------------

    def _commands(self, data: bytes) -> None:
        buffer = self._client
        buffer += data
        while buffer and self.phase == "command":
            end = buffer.find(b"\n")
            if end == -1 and len(buffer) < LINE_LIMIT:
                return
            end = len(buffer) - 1 if end == -1 else end
            line = bytes(buffer[:end + 1])
            del buffer[:end + 1]
            verb = line.split(None, 1)[0].decode("latin-1").upper() if line.strip() else ""
            passed = self.box.on_command(self, verb, line)
            if passed is None:
                continue
            self._to_server(passed)
            sent = passed.split(None, 1)[0].decode("latin-1").upper() if passed.strip() else ""
            self._answers.append(sent)
            if sent == "DATA":
                self.phase = "await_data"
        if buffer and self.phase != "command":
            rest = bytes(buffer)
            buffer.clear()
            self._segment(rest)  # the rest of the segment, in the new phase

    def _content(self, data: bytes) -> None:
        """Message content: pass it, and find CRLF.CRLF across segments."""
        window = self._tail + data
        at = window.find(END_OF_DATA)
        if at == -1:
            self.box.on_content(self, data)
            if self.phase == "data":
                self._to_server(data)
                self._tail = window[-4:]
            return
        if at < len(self._tail):  # the terminator began in an earlier segment
            lone = at + 2 == len(self._tail)  # the segment starts with the whole ".\r\n"
            if self.box.on_split_terminator(self, data, lone):
                self.event("end_of_data_dropped", bytes=len(data))
                return
        end = at + len(END_OF_DATA) - len(self._tail)
        self.box.on_content(self, data[:end])
        if self.phase != "data":
            return
        self._to_server(data[:end])
        self._answers.append(".")
        self.phase, self._tail = "command", b""
        if end < len(data):
            self._commands(data[end:])

    # -- server input ----------------------------------------------------

    def _replied(self, reply: bytes) -> None:
        command = self._answers.popleft() if self._answers else "?"
        if command is GREETING:
            self._to_client(self.box.on_greeting(self, reply))
        else:
            self._to_client(self.box.on_reply(self, command, reply))
        if command == "STARTTLS" and reply[:1] == b"2":
            self.tunnel()  # client and server now speak TLS
        elif command == "DATA" and self.phase == "await_data":
            self.phase = "data" if reply[:3] == b"354" else "command"
            self._tail = b"\r\n"  # the CRLF of DATA starts the terminator
            held, self._held = self._held, []
            for segment in held:
                self._segment(segment)

    # -- output ----------------------------------------------------------

    def _to_client(self, data: bytes) -> None:
        if data:
            self._out.append(Send(data))

    def _to_server(self, data: bytes) -> None:
        if data:
            self._out.append(SendUpstream(data))

    def _flush(self) -> list:
        """The actions so far, adjacent writes to one side joined (one segment
        in gives one segment out, as a firewall forwards packets)."""
        actions, self._out = self._out, []
        out = []
        for action in actions:
            if out and type(action) in (Send, SendUpstream) and type(out[-1]) is type(action):
                out[-1] = type(action)(out[-1].data + action.data)
            else:
                out.append(action)
        return out
