"""Quirks that change what the server answers."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta
from msgspec.structs import force_setattr

from emulator.core.hooks import Quirk
from emulator.quirks.faults import ReplyFault
from emulator.schema import Count, Record


class ReplyOverride(Record, Quirk):
    """The first spelling of the C{reply} fault (L{ReplyFault}), kept so that
    profiles written for it still load: answer a chosen occurrence of a
    command with a given reply instead of running it, as smtp-sink's
    per-command error table does.

    The source of a product's deviation goes in the profile entry's comment;
    this mechanism is generic (models: Postfix smtp-sink C{-h}/C{-s} flags).

    @ivar command: the verb (C{RCPT}), or C{connect} for the greeting.
    @ivar reply: the reply text(s), with the code, as in the catalogue.
    @ivar occurrence: the first occurrence on the connection to answer, from 1.
    @ivar times: how many occurrences from there to answer; 0 means all.
    """

    type = "reply_override"

    command: str
    reply: str | list[str]
    occurrence: Annotated[int, Meta(ge=1)] = 1
    times: Count = 1

    def __post_init__(self):
        # The fault's errors name command or reply, which are keys here too.
        force_setattr(self, "_fault", ReplyFault(reply=self.reply, command=self.command, from_=self.occurrence,
                                                 times=self.times))

    def on_connect(self, conn) -> bool:
        return self._fault.on_connect(conn)

    def before_command(self, conn, verb: str, arg: bytes) -> bool:
        return self._fault.before_command(conn, verb, arg)

    def before_data_end(self, conn, data: bytes) -> bool:
        return self._fault.before_data_end(conn, data)


#: The reply family.
TYPES = (ReplyOverride,)
