"""
The core's extension points: the hooks a connection calls at each step
(L{HOOKS}), the base class L{Quirk} that every quirk family builds on
(L{emulator.quirks.faults}, L{emulator.quirks.replies},
L{emulator.quirks.tls}), and L{hook_table}, which the core uses to call a
hook only on the quirks that override it.  Imports nothing of the emulator.
"""

from __future__ import annotations

from typing import ClassVar

HOOKS = ("on_connect", "before_command", "ehlo_keywords", "transform_reply", "on_starttls", "after_tls",
         "before_data_end", "shape_reply")


class Quirk:
    """Base class of every quirk.  A quirk type is a record (an
    L{emulator.schema.Record}, or a frozen dataclass) whose fields are its
    attributes, with its profile name in the class attribute C{type}.

    Per-connection state never lives on the quirk (one instance serves every
    connection of a profile); use C{conn.session.counts} or C{conn.shared}.
    """

    __slots__ = ()  # a mixin of msgspec Structs
    type: ClassVar[str] = ""
    #: True if the quirk's output depends on how input is split into
    #: segments; such quirks opt out of the chunking-invariance property.
    boundary_sensitive: ClassVar[bool] = False

    def on_connect(self, conn) -> bool:
        """Before the greeting.  Return True if the quirk answered instead."""
        return False

    def before_command(self, conn, verb: str, arg: bytes) -> bool:
        """Before the handler of C{verb} runs (its count already includes this
        occurrence).  Return True if the quirk answered instead."""
        return False

    def ehlo_keywords(self, conn, keywords: list[str]) -> list[str]:
        """The EHLO keyword lines about to be sent; return the ones to send."""
        return keywords

    def transform_reply(self, conn, name: str, reply):
        """The catalogue reply C{name} about to be sent; return the one to send."""
        return reply

    def on_starttls(self, conn, pending: bytes) -> bytes:
        """Plaintext that followed STARTTLS in the same read; return what is
        processed after the handshake (by default nothing: RFC 3207 section 6)."""
        return b""

    def after_tls(self, conn) -> None:
        """The handshake has completed and the session was reset; the quirk
        may change C{conn.session} (for example C{tls_secure})."""

    def before_data_end(self, conn, data: bytes) -> bool:
        """The message C{data} is complete (end of DATA), before it is
        delivered.  Return True if the quirk answered instead: the message is
        then not delivered."""
        return False

    def shape_reply(self, conn, name: str, actions: list) -> list:
        """The actions that send one reply (at first a single C{Send}); return
        the actions to queue instead: the bytes split over several writes with
        C{Delay}s between them, say, or held back for a later write.  Not
        called for the reply after DATA, which the host writes once the
        message is stored."""
        return actions


def hook_table(built) -> dict[str, tuple]:
    """For each hook, the quirks that override it, in order."""
    return {
        hook: tuple(q for q in built if getattr(type(q), hook) is not getattr(Quirk, hook))
        for hook in HOOKS
    }
