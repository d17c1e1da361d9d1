"""
What the sans-IO cores ask their host to do: one vocabulary for all of them.

L{emulator.core.connection.ServerConnection} never touches a socket, a clock or a file:
each call returns a list of these actions, and the host carries them out in
order (L{emulator.host.interpreter} is the one interpreter, behind the
Twisted edges and the in-memory harnesses).

A host serves one connection, its I{peer}: L{Send}, L{Close}, L{StartTLS},
L{Delay}, L{Deliver} and L{Event} mean the same whoever emits them.  The
middlebox relay (L{emulator.middlebox.relay}) emits them for its client, the
peer it serves, and has a second connection, to the server it stands in
front of (the I{upstream}): only that leg needs actions of its own,
L{SendUpstream} and L{CloseUpstream}.  The sans-IO client
(L{emulator.sender.client}) uses L{Send}, L{Close} and L{Event} the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True, slots=True)
class Send:
    """Write C{data} to the peer, exactly as given."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Begin the server side of a TLS handshake (RFC 3207 section 4).

    Everything sent after this action travels inside TLS.  The host tells the
    core the outcome with C{tls_established} or C{connection_lost}.
    """


@dataclass(frozen=True, slots=True)
class Close:
    """End the connection: cleanly after pending writes, or, with C{abort},
    at once with a TCP reset."""

    abort: bool = False


@dataclass(frozen=True, slots=True)
class Delay:
    """Wait C{seconds} before carrying out the actions that follow, and read
    nothing from the peer meanwhile."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Deliver:
    """Store an accepted message, then send C{accepted}; if storing fails,
    send C{failed} instead.  The message must be durable before the reply
    that confirms it leaves (RFC 5321 section 6.1)."""

    message: "Message"
    accepted: bytes
    failed: bytes


@dataclass(frozen=True, slots=True)
class Event:
    """Something worth a line in the transcript that is not bytes on the
    wire: a TLS switch, an aborted message, an authentication outcome."""

    name: str
    fields: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendUpstream:
    """Write C{data} to the upstream server (a relay's second leg), exactly as given."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CloseUpstream:
    """Close the connection to the upstream server after pending writes."""


Action = Union[Send, StartTLS, Close, Delay, Deliver, Event, SendUpstream, CloseUpstream]


@dataclass(frozen=True, slots=True)
class Message:
    """One message as accepted after DATA, with its envelope."""

    sender: bytes
    recipients: tuple[bytes, ...]
    data: bytes
    peer: str
    profile: str
    helo: bytes
    tls: bool
    auth_user: str | None
    session_id: str
