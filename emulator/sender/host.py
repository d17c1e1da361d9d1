"""
Sending as a legacy persona: the host of L{emulator.sender.client}.

    result = send("ims55sp2-sender", "127.0.0.1", 2525, recipients=["b@example.test"])
    result.delivered, result.status, result.last_reply
    print(result.human())

L{send} uses plain sockets and the stdlib ssl module through memory BIOs, so
that the bytes a plaintext server sends to a TLS client (KB Q218430) show in
the transcript; every network wait has a timeout.  L{converse} drives the same
client against the in-memory server of L{emulator.testing.harness.Harness}.
"""

from __future__ import annotations

import socket
import ssl
import time
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Iterable

from emulator.sender import profile as clientprofile
from emulator.core.actions import Close, Event, Send
from emulator.sender.client import ClientConnection, Handshake, Letter, Outcome, is_ip_address
from emulator.sender.profile import ClientProfile, ClientTLS, Credentials
from emulator.capture.transcript import Transcript

DEFAULT_SENDER = "sender@example.org"
DEFAULT_RECIPIENT = "recipient@example.test"
# Every client action and every read is a step; a session never needs this many.
_MAX_STEPS = 100_000
_TLS_VERSIONS = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
                 "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


@dataclass
class Result:
    """One run of a persona: the outcome and the client's transcript
    (C{->} what the persona sent, C{<-} what the server sent)."""

    persona: str
    peer: str
    outcome: Outcome
    transcript: Transcript

    @property
    def delivered(self) -> bool:
        return self.outcome.delivered

    @property
    def status(self) -> int:
        """The exit status of C{emulator send}: 0 delivered, 1 not."""
        return 0 if self.delivered else 1

    @property
    def last_reply(self) -> str | None:
        """The last complete server reply's last line (C{"250 OK"}), if any."""
        reply = self.outcome.last_reply
        return reply.text if reply else None

    def summary(self) -> str:
        if self.delivered:
            return f"=== result delivered last_reply={self.last_reply}\n"
        lines = f"=== result not delivered ({self.outcome.failure}): {self.outcome.error}\n"
        if self.outcome.report:
            lines += f"=== report {self.outcome.report}\n"
        return lines

    def human(self) -> str:
        """The transcript in arrow form, with a header and the result."""
        head = f"=== session persona {self.persona} peer {self.peer}\n"
        return head + self.transcript.human() + self.summary()


class TLSFailure(Exception):
    """A handshake that did not complete; C{received} is what the peer sent
    meanwhile when it was not TLS (a plaintext greeting)."""

    def __init__(self, reason: str, received: bytes = b""):
        super().__init__(reason)
        self.reason = reason
        self.received = received if received and not 0x14 <= received[0] <= 0x17 else b""


def parse_endpoint(text: str, default_port: int) -> tuple[str, int]:
    """C{tcp:HOST:PORT}, C{tcp:host=HOST:port=PORT}, C{HOST:PORT}, C{[V6]:PORT}
    or C{HOST} (the persona's port).  Raise ValueError for anything else."""
    rest = text[4:] if text.startswith("tcp:") else text
    port: str | int = default_port
    if "=" in rest:
        try:
            parts = dict(part.split("=", 1) for part in rest.split(":"))
        except ValueError:
            raise ValueError(f"{text!r}: expected tcp:host=HOST:port=PORT") from None
        if set(parts) - {"host", "port"}:
            raise ValueError(f"{text!r}: only host= and port= are understood")
        host, port = parts.get("host", ""), parts.get("port", default_port)
    elif rest.startswith("["):
        host, _, after = rest[1:].partition("]")
        port = after[1:] if after.startswith(":") else default_port
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    else:
        host = rest  # a name, an IPv4 address, or a bare IPv6 address
    if not host:
        raise ValueError(f"{text!r}: no host")
    if not str(port).isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port)


def default_message(persona: ClientProfile, sender: str, recipients: Iterable[str]) -> bytes:
    """A small message naming the persona, for when none is given; with the
    persona's C{unfolded_to_line}, its To: header is one line that long,
    listing the forwarding rule's members after the recipients (KB Q288240)."""
    to = f"To: {', '.join(f'<{r}>' for r in recipients)}"
    member = 0
    while len(to) < persona.unfolded_to_line:  # bounded: each pass adds at least 20 characters
        member += 1
        to += f", <member{member:04d}@example.org>"
    return (f"From: <{sender}>\r\n{to}\r\n"
            f"Subject: test message from the {persona.name} persona\r\n\r\n"
            f"Sent by `emulator send` as {persona.product} {persona.version}.\r\n").encode("latin-1", "replace")


def client_context(tls: ClientTLS, cafile: str | None = None) -> ssl.SSLContext:
    """The stdlib TLS context of a persona.  OpenSSL checks only the chain (when
    the persona does); the name is the persona's rule, checked by the client core."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    if tls.check_chain:
        context.verify_mode = ssl.CERT_REQUIRED
        if cafile:
            context.load_verify_locations(cafile)
        else:
            context.load_default_certs()
    else:
        context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0/1.1; offering them is the point of a legacy persona.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = _TLS_VERSIONS[tls.min_version]
        if tls.max_version:
            context.maximum_version = _TLS_VERSIONS[tls.max_version]
    if context.minimum_version < ssl.TLSVersion.TLSv1_2:
        # OpenSSL 3 refuses TLS 1.0/1.1 signatures above security level 0.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def send(persona: str | ClientProfile, host: str, port: int | None = None, *, sender: str = DEFAULT_SENDER,
         recipients: Iterable[str] = (DEFAULT_RECIPIENT,), message: bytes | None = None,
         server_name: str | None = None, cafile: str | None = None, credentials: Credentials | None = None,
         helo_name: str | None = None, timeout: float = 30.0) -> Result:
    """Send one message to C{host}:C{port} as C{persona} (a name, a path or a
    loaded L{ClientProfile}) over a real connection.

    @param server_name: the server's host name for a C{fqdn} certificate
        check (default: C{host} when it is a name, not an address).
    @param cafile: PEM file of CAs to trust (C{emulator ca export}).
    @param credentials: the NT account; default: the persona's own, if any.
    @param timeout: seconds for each network wait.
    """
    persona = clientprofile.load(persona)
    port = port or persona.port
    recipients = tuple(recipients)
    letter = Letter(sender, recipients, default_message(persona, sender, recipients) if message is None else message)
    if server_name is None and not is_ip_address(host):
        server_name = host
    transcript = Transcript("send", persona.name, f"{host}:{port}", time.monotonic())
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        transcript.event(time.monotonic(), "connect_failed", reason=f"{type(e).__name__}: {e}")
        client = ClientConnection(persona, letter, dialled=host, server_name=server_name)
        if isinstance(e, TimeoutError):
            client.timed_out()
        else:
            client.refused(f"cannot connect to {host}:{port}: {e.strerror or e}",
                           "refused" if isinstance(e, ConnectionRefusedError) else "unreachable")
        return Result(persona.name, f"{host}:{port}", client.outcome, transcript)
    with sock:
        client = ClientConnection(persona, letter, dialled=sock.getpeername()[0], server_name=server_name,
                                  credentials=credentials, helo_name=helo_name)
        _drive(client, _SocketLink(sock, client_context(persona.tls, cafile)), transcript)
    return Result(persona.name, f"{host}:{port}", client.outcome, transcript)


def converse(persona: str | ClientProfile, harness, *, sender: str = DEFAULT_SENDER,
             recipients: Iterable[str] = (DEFAULT_RECIPIENT,), message: bytes | None = None,
             certificate: bytes | None = None, dialled: str = "192.0.2.25", server_name: str | None = None,
             credentials: Credentials | None = None, helo_name: str | None = None) -> Result:
    """Run C{persona} against an in-memory server (an unconnected
    L{emulator.testing.harness.Harness}), no sockets.  A STARTTLS handshake completes
    at once, with C{certificate} (DER) as the server's; implicit TLS needs
    real sockets (L{send})."""
    persona = clientprofile.load(persona)
    if persona.tls.implicit:
        raise ValueError(f"{persona.name} starts with TLS; use send() against a real listener")
    recipients = tuple(recipients)
    letter = Letter(sender, recipients, default_message(persona, sender, recipients) if message is None else message)
    client = ClientConnection(persona, letter, dialled=dialled, server_name=server_name,
                              credentials=credentials, helo_name=helo_name)
    transcript = Transcript("converse", persona.name, f"{dialled}:{persona.port}", time.monotonic())
    _drive(client, _HarnessLink(harness, certificate), transcript)
    return Result(persona.name, f"{dialled}:{persona.port}", client.outcome, transcript)


def _drive(client: ClientConnection, link, transcript: Transcript) -> None:
    """Carry out the client's actions and feed it what the link reads, until it is done."""
    now = time.monotonic
    queue = deque(client.connect())
    link.open()
    for _ in range(_MAX_STEPS):
        if not queue:
            if client.closed:
                break
            try:
                wait_limit = getattr(client, "wait_limit", None)
                data = link.read(wait_limit() if wait_limit else None)
            except TimeoutError:
                transcript.event(now(), "timeout")
                queue.extend(client.timed_out())
                continue
            except OSError as e:
                transcript.event(now(), "connection_error", reason=f"{type(e).__name__}: {e}")
                data = b""
            if data:
                transcript.sent(now(), data, link.tls)  # server to client
                queue.extend(client.receive(data))
            else:
                transcript.event(now(), "connection_lost")
                queue.extend(client.connection_lost())
            continue
        action = queue.popleft()
        kind = type(action)
        if kind is Send:
            transcript.received(now(), action.data, link.tls)  # client to server
            try:
                link.write(action.data)
            except OSError as e:
                transcript.event(now(), "connection_error", reason=f"{type(e).__name__}: {e}")
                queue.extend(client.connection_lost())
        elif kind is Event:
            transcript.event(now(), action.name, **action.fields)
        elif kind is Handshake:
            transcript.event(now(), "tls_starting", **({"implicit": True} if action.implicit else {}))
            try:
                info, certificate = link.start_tls(action.server_name)
            except TLSFailure as e:
                if e.received:
                    transcript.sent(now(), e.received, False)
                queue.extend(client.tls_failed(e.reason))
                continue
            transcript.event(now(), "tls_established", **info)
            queue.extend(client.tls_established(info, certificate=certificate))
        elif kind is Close:
            transcript.event(now(), "closed")
            link.close()
            break
    else:
        transcript.event(now(), "step_limit")
        client.timed_out()
    link.close()


class _SocketLink:
    """A connected socket, with TLS through memory BIOs once started."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext):
        self.sock = sock
        self.context = context
        self.tls = False
        self._ssl: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()

    def open(self) -> None:
        """The socket is already connected."""

    def write(self, data: bytes) -> None:
        if self._ssl is None:
            self.sock.sendall(data)
        else:
            self._ssl.write(data)
            self._flush()

    def read(self, limit: float | None = None) -> bytes:
        """The next bytes; C{limit} seconds replaces the socket's timeout for this wait."""
        if limit is not None and self._ssl is None:
            default = self.sock.gettimeout()
            self.sock.settimeout(limit)
            try:
                return self.sock.recv(65536)
            finally:
                self.sock.settimeout(default)
        if self._ssl is None:
            return self.sock.recv(65536)
        for _ in range(_MAX_STEPS):
            try:
                return self._ssl.read(65536)
            except ssl.SSLWantReadError:
                self._flush()
                raw = self.sock.recv(65536)
                if not raw:
                    return b""
                self._incoming.write(raw)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            except ssl.SSLError as e:
                raise ConnectionError(f"TLS: {e.reason or e}") from None
        return b""

    def start_tls(self, server_name: str | None) -> tuple[dict, bytes | None]:
        tls = self.context.wrap_bio(self._incoming, self._outgoing, server_side=False, server_hostname=server_name)
        received = bytearray()
        for _ in range(_MAX_STEPS):
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                try:
                    raw = self.sock.recv(65536)
                except TimeoutError:
                    raise TLSFailure("no answer to the TLS handshake in time", bytes(received)) from None
                except OSError as e:
                    raise TLSFailure(f"connection broke during the handshake: {e}", bytes(received)) from None
                if not raw:
                    raise TLSFailure("the server closed the connection during the handshake", bytes(received))
                received += raw
                self._incoming.write(raw)
            except ssl.SSLError as e:
                self._flush()  # the alert, so that the server learns why
                raise TLSFailure(_ssl_reason(e), bytes(received)) from None
        self._flush()
        self._ssl, self.tls = tls, True
        name, _, bits = tls.cipher()
        return {"version": tls.version(), "cipher": name, "bits": bits}, tls.getpeercert(binary_form=True)

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending:
            try:
                self.sock.sendall(pending)
            except OSError:
                pass  # the read that follows sees the broken connection

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class _HarnessLink:
    """An in-memory server (L{emulator.testing.harness.Harness}) in place of a socket."""

    def __init__(self, harness, certificate: bytes | None):
        self.harness = harness
        self.certificate = certificate
        self.tls = False
        self._pending = bytearray()
        self._delay = 0.0

    def open(self) -> None:
        self._timed(self.harness.connect)

    def write(self, data: bytes) -> None:
        self._timed(self.harness.send, data)

    def _timed(self, step, *args) -> None:
        """Run a server step; add the seconds of the delays it asked for (no
        time passes in memory) to the wait before its bytes."""
        before = len(self.harness.delays)
        self._pending += step(*args)
        self._delay += sum(self.harness.delays[before:])

    def read(self, limit: float | None = None) -> bytes:
        """What the server wrote; a C{limit} shorter than the delays the
        server asked for before it is a timeout, as on a real connection."""
        delay, self._delay = self._delay, 0.0
        if self._pending and limit is not None and delay > limit:
            self._pending.clear()
            raise TimeoutError(f"the server's reply came after {delay:g} s")
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            return data
        if self.harness.closed:
            return b""
        raise TimeoutError("the in-memory server waits for input")  # both sides would wait forever

    def start_tls(self, server_name: str | None) -> tuple[dict, bytes | None]:
        if not self.harness.tls_pending:
            raise TLSFailure("the server did not start TLS")
        info = {"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384", "bits": 256}
        self._pending += self.harness.handshake(**info)
        self.tls = True
        return info, self.certificate

    def close(self) -> None:
        if not self.harness.closed:
            self.harness.lose()


def _ssl_reason(error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    if error.reason:  # OpenSSL's code, e.g. WRONG_VERSION_NUMBER: a plaintext server
        return f"{error.reason.lower().replace('_', ' ')} ({error.library or 'SSL'} {error.reason})"
    return str(error)


# Public names for other drivers of a client core with the same interface
# (emulator.learn.probe plays its script through them).
drive = _drive
SocketLink = _SocketLink
HarnessLink = _HarnessLink
