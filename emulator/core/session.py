"""
Per-connection and per-transaction state (the aiosmtpd split): a L{Session}
lives as long as the connection, an L{Envelope} from MAIL to the end of DATA
or RSET.  Plain data; the rules that change it live in L{emulator.core.commands}.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field


class Phase(enum.Enum):
    """Where the connection is; each phase reads input its own way."""

    COMMAND = "command"  # lines are commands
    DATA = "data"  # bytes are message content: to the terminator, or a counted chunk (BDAT, XEXCH50)
    LINE = "line"  # the next line answers a server prompt (AUTH, XAUTH)
    TLS_PENDING = "tls-pending"  # handshake under way; input is TLS records
    CLOSED = "closed"  # nothing more is read


@dataclass(slots=True)
class Envelope:
    """One mail transaction (RFC 5321 section 3.3).

    @ivar chunks: the BDAT chunks taken so far (RFC 3030), None before the
        first: a transaction that has one cannot use DATA.
    @ivar chunk_bytes: their total size.
    @ivar binarymime: MAIL said C{BODY=BINARYMIME} to a server that lists
        it (RFC 3030 section 3): only BDAT may carry the message.
    """

    sender: bytes | None = None
    mail_params: bytes = b""
    recipients: list[bytes] = field(default_factory=list)
    chunks: list[bytes] | None = None
    chunk_bytes: int = 0
    binarymime: bool = False


@dataclass(slots=True)
class Session:
    """What the server knows about the connection."""

    id: str
    peer_ip: str
    peer_port: int
    local_port: int = 0
    helo: bytes | None = None
    esmtp: bool = False
    tls: bool = False
    tls_info: dict | None = None
    tls_secure: bool = False  # TLS and strong enough for the profile (tls: min_bits)
    auth_user: str | None = None
    messages: int = 0
    commands: int = 0
    bad_commands: int = 0
    counts: Counter = field(default_factory=Counter)
    notes: dict = field(default_factory=dict)  # per-connection scratch for quirks
