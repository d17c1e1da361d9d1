"""
The sans-IO sender: an emulated legacy SMTP client, bytes in, actions out.

    client = ClientConnection(persona, Letter("a@example.org", ("b@example.test",), body),
                              dialled="127.0.0.1", server_name="mail.example.test")
    actions = client.connect()                     # [] (await the greeting) or [Handshake] (implicit TLS)
    actions = client.receive(b"220 ready\\r\\n")    # Send, Handshake, Close, Event
    actions = client.tls_established(info, certificate=der)
    actions = client.tls_failed("reason")
    actions = client.connection_lost()
    actions = client.timed_out()
    client.outcome                                 # delivered or not, why, the last reply

The mirror of L{emulator.core.connection.ServerConnection}: it never touches a socket
or a clock.  The host (L{emulator.sender.host}: plain sockets and stdlib ssl, or
the in-memory server L{emulator.testing.harness.Harness}) carries out the actions.
What differs between senders is the persona's data (L{emulator.sender.profile});
NTLM tokens come from pyspnego's public client, and the certificate name check
from service_identity, both pure computations.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Callable

from spnego.exceptions import SpnegoError

from emulator.core.actions import Action, Close, Event, Send
from emulator.sender.profile import ClientProfile, Credentials

_REPLY_LINE = re.compile(rb"\A([0-9]{3})([ -]?)(.*)\Z", re.DOTALL)
# A reply line longer than this without a line end is not SMTP (RFC 5321
# section 4.5.3.1.5 allows 512 octets); the client gives up on the server.
_LINE_LIMIT = 65536


@dataclass(frozen=True, slots=True)
class Handshake:
    """Begin the client side of a TLS handshake on the connection; tell the
    client the outcome with C{tls_established} or C{tls_failed}.

    @ivar server_name: the name to send as SNI, or None for no SNI.
    @ivar implicit: TLS from the first byte (no STARTTLS before it)."""

    server_name: str | None = None
    implicit: bool = False


@dataclass(frozen=True)
class Letter:
    """What to send: the envelope and the message as it is stored (line ends
    are made CRLF and leading dots doubled on the wire)."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class ServerReply:
    """One complete server reply: the code and the text of each line
    (C{size}: its bytes on the wire)."""

    code: int
    lines: tuple[str, ...]
    size: int = field(default=0, compare=False)

    @property
    def text(self) -> str:
        """The last line as it was sent (C{"250 OK"})."""
        return f"{self.code:03d} {self.lines[-1]}".rstrip() if self.code else self.lines[-1]

    def keywords(self) -> set[str]:
        """The EHLO keywords (first word of each line after the first), upper case;
        C{AUTH=LOGIN} counts as C{AUTH}."""
        return {re.split(r"[ =]", line.strip(), maxsplit=1)[0].upper() for line in self.lines[1:] if line.strip()}


class ReplyReader:
    """Splits server bytes into complete replies (RFC 5321 section 4.2.1),
    whatever pieces they arrive in; bare LF line ends are accepted."""

    def __init__(self):
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._size = 0

    def feed(self, data: bytes) -> list[ServerReply]:
        self._buffer += data
        replies = []
        while (end := self._buffer.find(b"\n")) != -1:
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[:end + 1]
            self._size += end + 1
            match = _REPLY_LINE.match(line)
            if match is None:  # not a reply line: a reply of its own, code 0
                replies.append(self._complete(0, line.decode("latin-1")))
                continue
            if match.group(2) == b"-":
                self._lines.append(match.group(3).decode("latin-1"))
            else:
                replies.append(self._complete(int(match.group(1)), match.group(3).decode("latin-1")))
        if len(self._buffer) > _LINE_LIMIT:
            replies.append(ServerReply(0, (f"{len(self._buffer)} bytes without a line end",), len(self._buffer)))
            self._buffer.clear()
        return replies

    def _complete(self, code: int, last: str) -> ServerReply:
        reply = ServerReply(code, (*self._lines, last), self._size)
        self._lines, self._size = [], 0
        return reply

    def discard(self) -> int:
        """Drop what is buffered; return how many bytes that was."""
        dropped = len(self._buffer) + self._size
        self._buffer.clear()
        self._lines, self._size = [], 0
        return dropped


@dataclass
class Outcome:
    """How a client run ended.

    @ivar delivered: the server answered the message with 2xx.
    @ivar failure: why not, a key of L{emulator.sender.profile.FAILURES}; C{""} if delivered.
    @ivar error: the reason in words.
    @ivar report: the persona's own words for the failure (its NDR or error dialog), if sourced.
    @ivar last_reply: the last complete server reply.
    """

    delivered: bool = False
    failure: str = ""
    error: str = ""
    report: str = ""
    last_reply: ServerReply | None = None


def ntlm_client(credentials: Credentials, workstation: str):
    """An NTLM initiator from pyspnego's public API: C{step(token)} gives the
    next token (NEGOTIATE first, then AUTHENTICATE for the CHALLENGE)."""
    import spnego

    user = f"{credentials.domain}\\{credentials.user}" if credentials.domain else credentials.user
    return spnego.client(user, credentials.password, hostname=workstation, protocol="ntlm",
                         options=spnego.NegotiateOptions.use_ntlm)


def check_certificate_name(certificate: bytes, rule: str, *, dialled: str, server_name: str | None) -> str:
    """Check a DER server certificate by the persona's rule with service_identity:
    C{dialled} against the IP address the connection went to (KB Q273948),
    C{fqdn} against the server's host name, C{none} not at all.
    Return C{""} when it passes, else the reason."""
    if rule == "none":
        return ""
    from cryptography import x509
    from service_identity import CertificateError, VerificationError
    from service_identity.cryptography import verify_certificate_hostname, verify_certificate_ip_address

    name = dialled if rule == "dialled" else server_name
    if not name:
        return f"no host name to check the certificate against (dialled {dialled}; give the server's name)"
    cert = x509.load_der_x509_certificate(certificate)
    try:
        if is_ip_address(name):
            verify_certificate_ip_address(cert, name)
        else:
            verify_certificate_hostname(cert, name)
    except (VerificationError, CertificateError):
        return f"certificate for {', '.join(_names(cert)) or 'no names'} does not match {name} ({rule} check)"
    return ""


def is_ip_address(name: str) -> bool:
    """Whether C{name} is an IPv4 or IPv6 address literal (brackets allowed)."""
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _names(cert) -> list[str]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    return [*san.get_values_for_type(x509.DNSName), *map(str, san.get_values_for_type(x509.IPAddress))]


def wire_body(data: bytes) -> bytes:
    """The message as DATA sends it: CRLF line ends, leading dots doubled
    (RFC 5321 section 4.5.2), and the terminating CRLF.CRLF."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    out = []
    for line in lines:
        line = line[:-1] if line.endswith(b"\r") else line
        out.append((b"." + line if line.startswith(b".") else line) + b"\r\n")
    return b"".join(out) + b".\r\n"


class ClientConnection:
    """One SMTP client session of a persona, driven by its host."""

    def __init__(self, persona: ClientProfile, letter: Letter, *, dialled: str, server_name: str | None = None,
                 credentials: Credentials | None = None, helo_name: str | None = None,
                 ntlm: Callable[[Credentials, str], object] = ntlm_client):
        self.persona = persona
        self.letter = letter
        self.dialled = dialled
        self.server_name = server_name
        self.credentials = credentials if credentials is not None else persona.auth.credentials
        self.helo_name = helo_name or persona.helo_name
        self.outcome = Outcome()
        self.closed = False
        self._ntlm_factory = ntlm
        self._reader = ReplyReader()
        self._out: list[Action] = []
        self._on_reply: Callable[[ServerReply], None] | None = None
        self._hello_verb = persona.hello
        self._keywords: set[str] = set()
        self._tls = False
        self._handshaking = False
        self._starttls_tried = False
        self._recipient = 0
        self._accepted = 0

    # -- the host's side -------------------------------------------------

    def connect(self) -> list[Action]:
        """The TCP connection is open."""
        if self.persona.tls.implicit:
            self._handshake(implicit=True)
        else:
            self._on_reply = self._greeting
        return self._flush()

    def receive(self, data: bytes) -> list[Action]:
        """Bytes from the server, in whatever pieces the network gave them."""
        if self.closed or self._handshaking:
            return self._flush()
        replies = self._reader.feed(data)
        for index, reply in enumerate(replies):
            handler, self._on_reply = self._on_reply, None
            if handler is None:  # nothing was asked: an unsolicited reply
                self.event("unexpected_reply", reply=reply.text)
                continue
            self.outcome.last_reply = reply
            handler(reply)
            if self.closed:
                break
            if self._handshaking:
                self._drop_after_starttls(replies[index + 1:])
                break
        return self._flush()

    def tls_established(self, info: dict | None = None, *, certificate: bytes | None = None) -> list[Action]:
        """The handshake asked for has completed; C{certificate} is the server's (DER)."""
        self._tls, self._handshaking = True, False
        tls = self.persona.tls
        problem = "no server certificate" if certificate is None and tls.check_name != "none" else ""
        if certificate is not None:
            problem = check_certificate_name(certificate, tls.check_name, dialled=self.dialled,
                                             server_name=self.server_name)
        if problem:
            return self.tls_failed(problem)
        if tls.implicit:
            self._on_reply = self._greeting
        elif tls.ehlo_after:  # RFC 3207 section 4.2: forget what EHLO said
            self._keywords = set()
            self._hello(self._hello_verb)
        else:
            self._after_hello()
        return self._flush()

    def tls_failed(self, reason: str) -> list[Action]:
        """The handshake failed, or the certificate did not pass."""
        self._handshaking = False
        self.event("tls_failed", reason=reason)
        self._fail("tls_failed", f"TLS failed: {reason}")
        self._close()
        return self._flush()

    def wait_limit(self) -> float | None:
        """Seconds the persona itself waits for the reply it awaits, or None
        for the host's timeout: the greeting's C{banner_timeout} (KB Q175982)."""
        limit = self.persona.banner_timeout
        if self._on_reply == self._greeting and not self.closed and isinstance(limit, (int, float)):
            return float(limit)
        return None

    def timed_out(self) -> list[Action]:
        """The host waited for the server too long."""
        if not self.closed and self._on_reply == self._greeting:
            # Q175982: the fixed IMS drops the connection after its banner
            # wait; the leaking one never would (the host stopped it).
            limit = self.persona.banner_timeout
            self.event("banner_timeout", waited=limit if limit is not None else "the host's timeout",
                       **({"note": "the persona never gives up (KB Q175982); stopped by the host"}
                          if limit == "never" else {}))
        if not self.closed:
            self._fail("timeout", "no reply from the server in time")
            self._close()
        return self._flush()

    def connection_lost(self) -> list[Action]:
        """The server closed the connection (or it broke)."""
        if not self.closed:
            self._fail("closed", "the server closed the connection")
            self.closed = True
        return self._flush()

    def refused(self, reason: str, failure: str = "refused") -> None:
        """The connection could not be made (the host never got to L{connect}):
        C{refused}, or C{unreachable} for any other reason."""
        self._fail(failure, reason)
        self.closed = True

    # -- helpers -----------------------------------------------------------

    def event(self, name: str, /, **fields) -> None:
        self._out.append(Event(name, fields))

    def _flush(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _send(self, line: str, on_reply: Callable[[ServerReply], None]) -> None:
        self._out.append(Send(line.encode("latin-1", "replace") + b"\r\n"))
        self._on_reply = on_reply

    def _fail(self, failure: str, error: str) -> None:
        if not self.outcome.failure and not self.outcome.delivered:
            self.outcome.failure, self.outcome.error = failure, error
            self.outcome.report = self.persona.report(failure)

    def _close(self) -> None:
        self.closed = True
        self._on_reply = None
        self._out.append(Close())

    def _quit(self, failure: str = "", error: str = "") -> None:
        if failure:
            self._fail(failure, error)
        self._send("QUIT", lambda reply: self._close())

    def _rejected(self, what: str, reply: ServerReply) -> None:
        self._quit("rejected", f"{what} refused: {reply.text}")

    def _handshake(self, implicit: bool = False) -> None:
        tls = self.persona.tls
        name = self.server_name or self.dialled
        self._handshaking = True
        self._out.append(Handshake(name if tls.sni and not is_ip_address(name) else None, implicit))

    def _drop_after_starttls(self, replies: list[ServerReply]) -> None:
        """Bytes that came with the 220 to STARTTLS were sent before TLS
        and must not be taken as replies inside it (the response-injection
        twin of CVE-2011-0411)."""
        dropped = sum(r.size for r in replies) + self._reader.discard()
        if dropped:
            self.event("starttls_plaintext_discarded", bytes=dropped)

    def _advertises(self, keywords) -> bool:
        return any(k.upper() in self._keywords for k in keywords)

    # -- the dialogue ------------------------------------------------------

    def _greeting(self, reply: ServerReply) -> None:
        if reply.code != 220:
            self._rejected("greeting", reply)
        else:
            self._hello(self._hello_verb)

    def _hello(self, verb: str) -> None:
        self._hello_verb = verb
        self._send(f"{verb} {self.helo_name}", self._after_hello_reply)

    def _after_hello_reply(self, reply: ServerReply) -> None:
        if 200 <= reply.code < 300:
            self._keywords = reply.keywords() if self._hello_verb == "EHLO" else set()
            self._after_hello()
        elif self._hello_verb == "EHLO" and reply.code >= 500 and self.persona.ehlo_fallback == "helo":
            self.event("ehlo_fallback", reply=reply.text)
            self._hello("HELO")
        else:
            self._rejected(self._hello_verb, reply)

    def _after_hello(self) -> None:
        tls, auth = self.persona.tls, self.persona.auth
        if (not self._tls and not self._starttls_tried and tls.starttls == "when_advertised"
                and self._advertises(tls.keywords)):
            self._starttls_tried = True
            self._send("STARTTLS", self._after_starttls)
        elif self.credentials is not None and auth.methods:
            self._authenticate()
        else:
            self._mail()

    def _after_starttls(self, reply: ServerReply) -> None:
        if reply.code == 220:
            self._handshake()
        elif self.persona.tls.on_refused == "quit":
            self._quit("starttls_refused", f"STARTTLS refused: {reply.text}")
        else:
            self.event("starttls_refused", reply=reply.text, then="continue in plaintext")
            self._after_hello()

    def _authenticate(self) -> None:
        auth = self.persona.auth
        method = next((m for m in auth.methods if m.keyword.upper() in self._keywords), None)
        if method is None:
            offered = " or ".join(m.keyword for m in auth.methods)
            if auth.unadvertised == "quit":
                self.event("auth_not_offered", wanted=offered)
                self._quit("no_auth", f"the server does not list {offered}")
                return
            if auth.unadvertised == "skip":
                self._mail()
                return
            method = auth.methods[0]
        ntlm = self._ntlm_factory(self.credentials, self.helo_name.split(".")[0].upper())
        negotiate = _b64(ntlm.step())

        def challenge(reply: ServerReply) -> None:
            if reply.code != 334:
                self._auth_refused(method.command, reply)
                return
            try:
                token = base64.b64decode(reply.lines[-1].strip(), validate=True)
                response = ntlm.step(token)
            except (binascii.Error, ValueError, SpnegoError) as e:
                self._send("*", lambda r: self._quit("auth_failed", f"unusable NTLM challenge: {e}"))
                return
            self._send(_b64(response), done)

        def done(reply: ServerReply) -> None:
            if 200 <= reply.code < 300:
                self.event("auth", command=method.command, outcome="ok")
                self._mail()
            else:
                self._auth_refused(method.command, reply)

        def prompt(reply: ServerReply) -> None:
            if reply.code == 334:
                self._send(negotiate, challenge)
            else:
                self._auth_refused(method.command, reply)

        if method.initial_response:
            self._send(f"{method.command} {negotiate}", challenge)
        else:
            self._send(method.command, prompt)

    def _auth_refused(self, command: str, reply: ServerReply) -> None:
        self.event("auth", command=command, outcome="refused", reply=reply.text)
        if self.persona.auth.on_failure == "quit":
            self._quit("auth_failed", f"{command} refused: {reply.text}")
        else:
            self._mail()

    def _parameters(self, parameters) -> str:
        size = len(self.letter.data)
        return "".join(f" {p.text.format(size=size)}" for p in parameters if p.keyword.upper() in self._keywords)

    def _mail(self) -> None:
        line = f"MAIL FROM:<{self.letter.sender}>{self._parameters(self.persona.mail_parameters)}"
        self._send(line, self._after_mail)

    def _after_mail(self, reply: ServerReply) -> None:
        if 200 <= reply.code < 300:
            self._next_recipient()
        else:
            self._rejected("MAIL", reply)

    def _next_recipient(self) -> None:
        if self._recipient < len(self.letter.recipients):
            address = self.letter.recipients[self._recipient]
            self._recipient += 1
            self._send(f"RCPT TO:<{address}>{self._parameters(self.persona.rcpt_parameters)}", self._after_rcpt)
        elif self._accepted:
            self._send("DATA", self._after_data)
        else:
            self._quit("rejected", "no recipient was accepted")

    def _after_rcpt(self, reply: ServerReply) -> None:
        if 200 <= reply.code < 300:
            self._accepted += 1
        else:
            self.event("recipient_refused", reply=reply.text)
        self._next_recipient()

    def _after_data(self, reply: ServerReply) -> None:
        if reply.code != 354:
            self._rejected("DATA", reply)
            return
        self._out.append(Send(wire_body(self.letter.data)))
        self._on_reply = self._after_message

    def _after_message(self, reply: ServerReply) -> None:
        if 200 <= reply.code < 300:
            self.outcome.delivered = True
            self.event("delivered", reply=reply.text)
            self._quit()
        else:
            self._rejected("the message", reply)


def _b64(token: bytes) -> str:
    return base64.b64encode(token).decode("ascii")
