"""Firewalls and STARTTLS: answering it themselves, or hiding it."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta
from msgspec.structs import force_setattr

from emulator.core import replies
from emulator.middlebox.base import Middlebox
from emulator.schema import Record, invalid


class StartTLSIntercept(Record, Middlebox):
    """A firewall that answers the client's C{STARTTLS} itself and never
    passes it on, then passes the client's TLS handshake to a server that
    never agreed to TLS: the handshake fails and no mail flows.

    Source: KB Q237327: "the firewall may respond to the STARTTLS command
    itself, instead of passing the command to the server. This causes the
    client to use encryption, even though the server is not configured to
    support it. As a result, the client is unable to send messages across
    the connection. This behavior is known to occur with the Cisco PIX
    Firewall and Secure Computing Sidewinder"; docs/sources.md §8.5 and
    §2.3.  The firewall's own reply text is unsourced [P].  After the reply
    the relay passes bytes unexamined both ways: the server reads the
    ClientHello as command bytes, and its plaintext reply breaks the
    client's handshake.

    @ivar reply: what the firewall answers to STARTTLS, with its code.
    """

    type = "starttls-intercept"

    reply: str = "220 Ready to start TLS"

    def __post_init__(self):
        try:
            parsed = replies.parse(self.reply)
        except replies.ReplyError as e:
            raise invalid("reply", str(e)) from None
        if "{" in self.reply or "}" in self.reply:
            raise invalid("reply", "is literal text: a middlebox fills in no {fields}")
        force_setattr(self, "_bytes", replies.render(parsed))

    def on_command(self, relay, verb: str, line: bytes) -> bytes | None:
        if verb != "STARTTLS":
            return line
        relay.answer(self._bytes)
        relay.tunnel()
        return None


class StartTLSStrip(Record, Middlebox):
    """Cisco ASA C{inspect esmtp} with its default C{no allow-tls}: "The
    STARTTLS indication is removed from the session connection attempt,
    forcing the client and server to negotiate a plain text session" (ASA
    CLI configuration guide, default C{_default_esmtp_map};
    docs/sources.md §8.3).  A STARTTLS the client sends anyway passes.

    @ivar keywords: the EHLO keywords hidden (C{TLS} was the old draft's).
    @ivar how: C{remove} the keyword lines (the guide's "removed"), or
        C{mask} them in place with C{X} of the same length (the ASA's
        C{mask} action for other EHLO parameters) [P].
    """

    type = "starttls-strip"

    keywords: list[str] = msgspec.field(default_factory=lambda: ["STARTTLS"])
    how: Annotated[Literal["remove", "mask"], Meta(description="remove or mask")] = "remove"

    def __post_init__(self):
        force_setattr(self, "_hidden", frozenset(k.upper() for k in self.keywords))

    def on_reply(self, relay, command: str, reply: bytes) -> bytes:
        if command != "EHLO" or reply[:1] != b"2":
            return reply
        lines = reply.splitlines(keepends=True)
        kept = lines[:1]
        for line, keyword, text in ehlo_lines(lines[1:]):
            if keyword not in self._hidden:
                kept.append(line)
                continue
            relay.event("ehlo_keyword_hidden", keyword=text.decode("latin-1"), how=self.how)
            if self.how == "mask":
                kept.append(line[:4] + b"X" * len(text) + line[4 + len(text):])
        return rejoin(kept)


def ehlo_lines(lines: list[bytes]):
    """Each keyword line of an EHLO reply (the lines after the first) as
    C{(line, keyword upper-cased, text without code and line end)}."""
    for line in lines:
        text = line[4:].rstrip(b"\r\n")
        yield line, text.split(None, 1)[0].decode("latin-1").upper() if text.strip() else "", text


def rejoin(kept: list[bytes]) -> bytes:
    """A reply from the lines left: the new last line ends it (RFC 5321 4.2.1)."""
    return b"".join(_separated(line, i == len(kept) - 1) for i, line in enumerate(kept))


def _separated(line: bytes, last: bool) -> bytes:
    if line[3:4] not in (b"-", b" "):
        return line
    return line[:3] + (b" " if last else b"-") + line[4:]
