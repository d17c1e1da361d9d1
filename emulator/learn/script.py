"""
The probe's fixed script: a few short sessions that show how a server
answers each command a profile has a reply for, and the sans-IO client that
plays one of them.

Every session is harmless: it names itself, asks nothing of the server but
replies, sends one small message to the one recipient the user gives, and
quits.  L{plan} is the whole script for a run, which the probe prints before
sending anything; steps marked C{when} happen only when the EHLO reply of
the same session listed that keyword (C{SIZE=} on MAIL) or the user gave a
refused domain, and the TLS sessions only when the server listed STARTTLS.

    client = ScriptClient(session, values)   # the interface of L{emulator.sender.client.ClientConnection}
    client.connect()                          # []: await the greeting
    client.receive(b"220 ...\\r\\n")          # [Send(b"EHLO ...\\r\\n")]
    client.tls_established(info, certificate=der)
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.core.actions import Close, Event, Send
from emulator.sender.client import Handshake, ReplyReader, ServerReply, wire_body

MESSAGE = "(the message)"  # the step that sends the message after a 354
TLS_VERSIONS = ("TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1")  # the pinned handshakes, newest first


@dataclass(frozen=True)
class Step:
    """One command of a session: C{line} with C{{helo}}, C{{sender}},
    C{{recipient}}, C{{refused}} and C{{size}} filled in at run time.

    @ivar when: C{""} always; C{"SIZE"} only if this session's EHLO listed
        SIZE; C{"refused"} only if the user named a refused domain.
    @ivar instead: the line sent when C{when} does not hold (None: skip).
    """

    line: str
    why: str
    when: str = ""
    instead: str | None = None


@dataclass(frozen=True)
class ProbeSession:
    """A session of the script.

    @ivar tls_version: pin the STARTTLS handshake to this version (the
        version-range sessions); None: any.
    @ivar needs_starttls: run only if the server listed STARTTLS.
    """

    name: str
    why: str
    steps: tuple[Step, ...]
    needs_starttls: bool = False
    tls_version: str | None = None


def _tls_session(name: str, why: str, version: str | None, after: tuple[Step, ...]) -> ProbeSession:
    return ProbeSession(name, why, (Step("EHLO {helo}", "the EHLO list before TLS"),
                                    Step("STARTTLS", "the reply to STARTTLS, then the handshake"),
                                    *after, Step("QUIT", "the goodbye")),
                        needs_starttls=True, tls_version=version)


SCRIPT = (
    ProbeSession("helo", "HELO, its syntax error and NOOP", (
        Step("HELO", "HELO without a name: the syntax error"),
        Step("HELO {helo}", "the HELO reply"),
        Step("NOOP", "NOOP"),
        Step("QUIT", "the goodbye"),
    )),
    ProbeSession("commands", "the EHLO list and the simple commands", (
        Step("EHLO {helo}", "the EHLO reply and keywords"),
        Step("NOOP", "NOOP"),
        Step("RSET", "RSET"),
        Step("HELP", "HELP"),
        Step("VRFY postmaster", "VRFY (of the address every server must have, RFC 5321 4.5.1)"),
        Step("XLEARNPROBE", "an unknown verb"),
        Step("QUIT", "the goodbye"),
    )),
    ProbeSession("errors", "commands out of order and a syntax error", (
        Step("MAIL FROM:<{sender}>", "MAIL before any HELO/EHLO"),
        Step("EHLO {helo}", "the EHLO reply again"),
        Step("RCPT TO:<{recipient}>", "RCPT before MAIL"),
        Step("MAIL FROM:", "MAIL without an address: the syntax error"),
        Step("MAIL FROM:<{sender}>", "the MAIL reply"),
        Step("MAIL FROM:<{sender}>", "a second MAIL in one transaction"),
        Step("DATA", "DATA before any recipient"),
        Step("RSET", "RSET of the transaction"),
        Step("QUIT", "the goodbye"),
    )),
    ProbeSession("message", "one small message to the recipient", (
        Step("EHLO {helo}", "the EHLO reply"),
        Step("MAIL FROM:<{sender}>", "MAIL"),
        Step("RCPT TO:<{recipient}>", "RCPT"),
        Step("RSET", "RSET after an envelope"),
        Step("MAIL FROM:<{sender}> SIZE={size}", "MAIL with the SIZE parameter (RFC 1870)",
             when="SIZE", instead="MAIL FROM:<{sender}>"),
        Step("RCPT TO:<probe@{refused}>", "a recipient in the domain the server should refuse", when="refused"),
        Step("RCPT TO:<{recipient}>", "RCPT"),
        Step("DATA", "DATA"),
        Step(MESSAGE, "the message, then the reply after it"),
        Step("QUIT", "the goodbye"),
    )),
    _tls_session("starttls", "STARTTLS, the handshake (version, cipher, certificate), EHLO inside TLS", None,
                 (Step("EHLO {helo}", "the EHLO list inside TLS"), Step("NOOP", "NOOP inside TLS"))),
    *(_tls_session(f"tls-{version}", f"a handshake offering {version} only (the version range)", version, ())
      for version in TLS_VERSIONS),
)


@dataclass(frozen=True)
class Values:
    """What fills the script's placeholders."""

    recipient: str
    sender: str = "probe@example.org"
    helo: str = "probe.example.org"
    refused: str = ""

    def message(self) -> bytes:
        """The message: small, plain, saying what sent it."""
        return (f"From: <{self.sender}>\r\nTo: <{self.recipient}>\r\nSubject: emulator learn probe\r\n\r\n"
                "A test message from `emulator learn --probe`, which records how this server\r\n"
                "answers SMTP commands.  Nothing needs to be done with it.\r\n").encode("latin-1", "replace")

    def fill(self, line: str) -> str:
        return line.format(helo=self.helo, sender=self.sender, recipient=self.recipient, refused=self.refused,
                           size=len(wire_body(self.message())))


def plan(values: Values, versions: bool = True) -> list[tuple[ProbeSession, list[str]]]:
    """Every session of a run with the lines it may send (conditional ones
    marked), for the user to read first."""
    out = []
    for session in SCRIPT:
        if session.tls_version and not versions:
            continue
        lines = []
        for step in session.steps:
            if step.line == MESSAGE:
                lines.append(f"  (the message, {len(values.message())} bytes: Subject: emulator learn probe)")
            elif step.when == "refused" and not values.refused:
                continue
            elif step.when:
                condition = "if EHLO lists SIZE" if step.when == "SIZE" else "refused domain"
                lines.append(f"{values.fill(step.line)}    ({condition}"
                             + (f"; else {values.fill(step.instead)})" if step.instead else ")"))
            else:
                lines.append(values.fill(step.line))
        out.append((session, lines))
    return out


class ScriptClient:
    """Plays one L{ProbeSession}: each command waits for the reply to the
    one before (no pipelining), every reply is taken as it comes, and the
    session ends with QUIT, or early when the server closes, a handshake
    fails, or STARTTLS or DATA is refused (then QUIT).

    Actions: L{Send}, L{Event}, L{Handshake}, L{Close}.
    @ivar keywords: the EHLO keywords of this session's first EHLO reply.
    @ivar replies: every complete reply, in order.
    """

    def __init__(self, session: ProbeSession, values: Values, server_name: str | None = None):
        self.session = session
        self.values = values
        self.server_name = server_name
        self.keywords: set[str] = set()
        self.replies: list[ServerReply] = []
        self.closed = False
        self._reader = ReplyReader()
        self._steps = list(session.steps)
        self._last = ""
        self._out: list = []

    # -- the host's side (as L{emulator.sender.host} drives a client) -----

    def connect(self) -> list:
        return []

    def receive(self, data: bytes) -> list:
        for reply in self._reader.feed(data):
            if self.closed:
                break
            self.replies.append(reply)
            self._answered(reply)
        return self._flush()

    def tls_established(self, info: dict | None = None, *, certificate: bytes | None = None) -> list:
        if certificate:
            self._out.append(Event("tls_certificate", describe_certificate(certificate)))
        self._next()
        return self._flush()

    def tls_failed(self, reason: str) -> list:
        self._out.append(Event("tls_failed", {"reason": reason}))
        self._close()
        return self._flush()

    def timed_out(self) -> list:
        self._out.append(Event("probe_timeout", {"waiting_for": self._last or "the greeting"}))
        self._close()
        return self._flush()

    def connection_lost(self) -> list:
        self.closed = True
        return self._flush()

    # -- the script --------------------------------------------------------

    def _answered(self, reply: ServerReply) -> None:
        last = self._last
        if last.startswith("EHLO") and not self.keywords and reply.code // 100 == 2:
            self.keywords = reply.keywords()
        if last == "QUIT":
            self._close()
        elif last == "STARTTLS" and reply.code == 220:
            self._out.append(Handshake(self.server_name))
        elif last in ("STARTTLS", "DATA") and reply.code not in (220, 354) and self._steps:
            self._steps = [s for s in self._steps if s.line == "QUIT"]  # nothing more to learn here
            self._next()
        else:
            self._next()

    def _next(self) -> None:
        while self._steps:
            step = self._steps.pop(0)
            line = self._line(step)
            if line is None:
                continue
            self._last = step.line.split(" ", 1)[0] if step.line != MESSAGE else MESSAGE
            data = wire_body(self.values.message()) if step.line == MESSAGE else line.encode("latin-1") + b"\r\n"
            self._out.append(Send(data))
            return
        self._close()

    def _line(self, step: Step) -> str | None:
        if step.line == MESSAGE:
            return MESSAGE
        holds = (not step.when or (step.when == "SIZE" and "SIZE" in self.keywords)
                 or (step.when == "refused" and self.values.refused))
        if holds:
            return self.values.fill(step.line)
        return self.values.fill(step.instead) if step.instead else None

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self._out.append(Close())

    def _flush(self) -> list:
        out, self._out = self._out, []
        return out


def describe_certificate(der: bytes) -> dict:
    """What a profile's C{tls:} section can say about a certificate: its
    names, key type and size, whether it signs itself."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*san.get_values_for_type(x509.DNSName), *map(str, san.get_values_for_type(x509.IPAddress))]
    except x509.ExtensionNotFound:
        names = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    key = cert.public_key()
    key_type = "rsa" if isinstance(key, rsa.RSAPublicKey) else "ec" if isinstance(key, ec.EllipticCurvePublicKey) \
        else type(key).__name__
    return {"names": names, "key_type": key_type, "key_size": getattr(key, "key_size", 0),
            "self_signed": cert.issuer == cert.subject,
            "not_after": cert.not_valid_after_utc.isoformat()}
