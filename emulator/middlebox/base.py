"""
The middlebox base class and its hooks, beneath every middlebox type
(L{emulator.middlebox.pix}, L{emulator.middlebox.starttls}) and the relay that
calls them.  Imports nothing of the emulator.
"""

from __future__ import annotations

from typing import ClassVar


class Middlebox:
    """Base class of every middlebox type.  A middlebox type is a record (an
    L{emulator.schema.Record}) whose fields are its attributes, with its name
    in the class attribute C{type}.

    One instance serves every connection; per-connection state lives on the
    relay (C{relay.notes}).  Each hook gets the relay and returns what passes.
    """

    __slots__ = ()  # a mixin of msgspec Structs
    type: ClassVar[str] = ""
    #: True if what passes depends on how input is split into segments.
    boundary_sensitive: ClassVar[bool] = False

    def on_greeting(self, relay, reply: bytes) -> bytes:
        """The server's greeting (all its lines); return what the client gets."""
        return reply

    def on_command(self, relay, verb: str, line: bytes) -> bytes | None:
        """A command line from the client, CRLF included, and its upper-cased
        verb; return the bytes passed to the server, or None to pass nothing
        (the middlebox may have answered with C{relay.answer})."""
        return line

    def on_reply(self, relay, command: str, reply: bytes) -> bytes:
        """The server's reply (all its lines) to C{command} (the verb as the
        server received it); return what the client gets."""
        return reply

    def on_content(self, relay, data: bytes) -> None:
        """Message content about to pass to the server, as it arrived (the
        end of data included, if this segment holds it); the middlebox may
        look at it and drop the connection (C{relay.drop})."""

    def on_split_terminator(self, relay, segment: bytes, lone: bool) -> bool:
        """A segment completes the end of data (CRLF.CRLF) that began in an
        earlier segment; C{lone} when it starts with the whole C{.CRLF}.
        Return True to drop the segment instead of passing it."""
        return False
