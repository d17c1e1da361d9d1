"""
A transcript as the server's side of the dialogue: each client command (or
the connection, or the end of a message) with the reply it got.

    session = read(transcript)        # a Session
    for x in session.exchanges:       # Exchange(step="EHLO", line=b"EHLO x", reply=b"250-...")
        ...

The server's leg is read: in a middlebox's transcript (the recorder's), the
records between the middlebox and the server (C{"leg": "server"}); in any
other (the probe's, the emulator's own), the connection's records.  Replies
are matched to commands in order, as a pipelining client sees them (RFC 2920),
the first one being the greeting; the bytes after a C{354} reply to DATA are
message content up to CRLF.CRLF; a line that follows a C{334} reply to AUTH
answers the server's challenge.  After a C{2xx} reply to STARTTLS, the
probe's records carry the plaintext inside TLS (C{"tls": true}); a
middlebox saw only ciphertext (C{=== tunnel}), which is not read.

Facts the host noted as events (C{probe}, C{tls_established},
C{tls_certificate}, C{credentials_masked}) come along in L{Session.events}.
"""

from __future__ import annotations

import datetime
from collections import deque
from dataclasses import dataclass, field

from emulator.capture.transcript import Transcript

CONNECT = "CONNECT"  # the step the greeting answers
DATA_END = "DATA_END"  # the step the reply after a message answers
AUTH_LINE = "AUTH_LINE"  # a line answering a 334 challenge
_AUTH_VERBS = ("AUTH", "XAUTH", "X-EXPS")  # Exchange 2000/2003's X-EXPS carries credentials too


@dataclass(frozen=True)
class Exchange:
    """One step of the dialogue and the server's reply to it.

    @ivar step: L{CONNECT}, L{DATA_END}, L{AUTH_LINE} or the verb, upper case.
    @ivar line: the client's line without its line end (empty for CONNECT
        and DATA_END).
    @ivar reply: the reply's bytes as the server sent them, every line.
    @ivar tls: the exchange happened inside TLS.
    """

    step: str
    line: bytes
    reply: bytes
    tls: bool = False

    @property
    def code(self) -> int:
        head = self.reply[:3]
        return int(head) if head.isdigit() else 0

    @property
    def argument(self) -> bytes:
        """The command's argument: what follows the verb and one space."""
        return self.line.partition(b" ")[2]

    def lines(self) -> list[str]:
        """The reply's lines as text, without line ends."""
        return [line.rstrip(b"\r\n").decode("latin-1") for line in self.reply.splitlines(keepends=True)]

    def texts(self) -> list[str]:
        """Each line's text after the code and its separator."""
        return [line[4:] for line in self.lines()]


@dataclass
class Session:
    """One recorded session as the server gave it.

    @ivar name: the transcript's session id.
    @ivar server: where it was captured (the upstream endpoint, the probe's target).
    @ivar date: the day it was captured (ISO), or "" when the transcript does not say.
    @ivar client: the client's address as the server saw it, when known.
    @ivar opaque: a middlebox saw TLS start and nothing after it.
    @ivar unanswered: client steps the server never answered.
    @ivar spans: every client step as (step, start, end): where its line
        lies in the client's byte stream on the leg read (for masking).
    @ivar client_records: (index in the transcript, offset in that stream)
        of each client record read.
    """

    name: str
    server: str = ""
    date: str = ""
    client: tuple[str, int] | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    events: list[tuple[str, dict]] = field(default_factory=list)
    opaque: bool = False
    unanswered: list[str] = field(default_factory=list)
    spans: list[tuple[str, int, int]] = field(default_factory=list)
    client_records: list[tuple[int, int]] = field(default_factory=list)

    def event(self, name: str) -> dict | None:
        """The fields of the first event C{name}, or None."""
        return next((fields for event, fields in self.events if event == name), None)


def read(transcript: Transcript, leg: str | None = None) -> Session:
    """The server's exchanges in C{transcript}: on the middlebox's server
    leg if it has one, else on the connection (C{leg}: "server" or "" to choose)."""
    session = Session(transcript.session_id, server=transcript.upstream or transcript.peer,
                      date=_date(transcript.started))
    if leg is None:
        leg = "server" if any(r.leg == "server" for r in transcript.records) else ""
    reader = _Reader(session)
    offset = 0
    for i, record in enumerate(transcript.records):
        if record.dir == "event":
            reader.event(record.event, record.fields)
        elif record.leg == leg:
            if record.dir == "c":
                if reader.client(record.data, record.tls):
                    session.client_records.append((i, offset))
                    offset += len(record.data)
            else:
                reader.server(record.data, record.tls)
    session.unanswered = [step for step, _, _ in reader.pending]
    return session


def _date(started: float) -> str:
    # The network hosts give epoch seconds; in-memory harnesses give 0.
    if started > 1e9:
        return datetime.datetime.fromtimestamp(started, datetime.timezone.utc).date().isoformat()
    return ""


class _Reader:
    """Pairs client steps with server replies as the records come in."""

    def __init__(self, session: Session):
        self.session = session
        self.pending: deque[tuple[str, bytes, bool]] = deque([(CONNECT, b"", False)])
        self.client_buffer = bytearray()
        self.server_buffer = bytearray()
        self.reply: list[bytes] = []
        self.phase = "command"  # command | await_data | data | tls_switch
        self.content_tail = b""
        self.challenged = False  # the last reply was a 334 to AUTH: the next line answers it
        self.tls = False
        self.consumed = 0  # client bytes taken from the buffer so far

    def event(self, name: str, fields: dict) -> None:
        self.session.events.append((name, fields))
        if name == "tunnel":
            self.session.opaque = True
            self.phase = "opaque"
        elif name == "probe":
            self.session.server = fields.get("target", self.session.server)
            self.session.date = fields.get("date", self.session.date)
            if fields.get("local"):
                host, _, port = fields["local"].rpartition(":")
                self.session.client = (host, int(port))

    def client(self, data: bytes, tls: bool) -> bool:
        """Client bytes; False if they are not read (ciphertext)."""
        if not self._same_layer(tls):
            return False
        self.client_buffer += data
        self._commands()
        return True

    def server(self, data: bytes, tls: bool) -> None:
        if not self._same_layer(tls):
            return
        self.server_buffer += data
        while self.phase != "opaque" and (end := self.server_buffer.find(b"\n")) != -1:
            line = bytes(self.server_buffer[:end + 1])
            del self.server_buffer[:end + 1]
            self.reply.append(line)
            if line[3:4] != b"-":  # the last line of a reply (RFC 5321 4.2.1)
                self._replied(b"".join(self.reply))
                self.reply = []

    def _same_layer(self, tls: bool) -> bool:
        """After a 2xx to STARTTLS, only records inside TLS are read."""
        if self.phase == "opaque":
            return False
        if self.phase == "tls_switch":
            if not tls:
                return False
            self.phase, self.tls = "command", True
        return True

    def _commands(self) -> None:
        buffer = self.client_buffer
        while buffer:
            if self.phase == "data":
                window = self.content_tail + bytes(buffer)
                at = window.find(b"\r\n.\r\n")
                if at == -1:
                    self.content_tail = window[-4:]
                    self._take(len(buffer))
                    return
                self._take(at + 5 - len(self.content_tail))
                self.pending.append((DATA_END, b"", self.tls))
                self.phase, self.content_tail = "command", b""
                continue
            if self.phase != "command":
                return  # held until the reply to DATA or STARTTLS says what follows
            end = buffer.find(b"\n")
            if end == -1:
                return
            line = bytes(buffer[:end + 1]).rstrip(b"\r\n")
            start = self.consumed
            self._take(end + 1)
            if self.challenged:
                self.challenged = False
                step = AUTH_LINE
            else:
                step = line.split(b" ", 1)[0].decode("latin-1").upper()
            self.pending.append((step, line, self.tls))
            self.session.spans.append((step, start, start + len(line)))
            if step == "DATA":
                self.phase = "await_data"
            elif step == "STARTTLS":
                self.phase = "await_tls"

    def _take(self, size: int) -> None:
        del self.client_buffer[:size]
        self.consumed += size

    def _replied(self, reply: bytes) -> None:
        step, line, tls = self.pending.popleft() if self.pending else ("", b"", self.tls)
        exchange = Exchange(step, line, reply, tls)
        self.session.exchanges.append(exchange)
        code = exchange.code
        self.challenged = code == 334 and step in (*_AUTH_VERBS, AUTH_LINE)
        if step == "DATA" and self.phase == "await_data":
            self.phase = "data" if code == 354 else "command"
            self.content_tail = b"\r\n"  # the CRLF that ended DATA starts the terminator
        elif step == "STARTTLS" and self.phase == "await_tls":
            if 200 <= code < 300:
                self.phase = "tls_switch"
                self._take(len(self.client_buffer))  # plaintext after STARTTLS is never executed (RFC 3207 6)
                self.server_buffer.clear()
                return
            self.phase = "command"
        self._commands()
