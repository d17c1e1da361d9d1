"""Quirks that change what the server answers."""

from __future__ import annotations

from emulator import replies
from emulator.quirks import Quirk, register


@register("reply_override")
class ReplyOverride(Quirk):
    """Answer a chosen occurrence of a command with a given reply instead of
    running it, as smtp-sink's per-command error table does.

    The source of a product's deviation goes in the profile entry's comment;
    this mechanism is generic (models: Postfix smtp-sink C{-h}/C{-s} flags).

    @ivar command: the verb (C{RCPT}), or C{connect} for the greeting.
    @ivar reply: the reply text(s), with the code, as in the catalogue.
    @ivar occurrence: the first occurrence on the connection to answer, from 1.
    @ivar times: how many occurrences from there to answer; 0 means all.
    """

    command: str
    reply: str | list[str]
    occurrence: int = 1
    times: int = 1

    def __post_init__(self):
        object.__setattr__(self, "command", self.command.upper())
        object.__setattr__(self, "_reply", _parse(self.reply))
        if self.occurrence < 1:
            raise _error("occurrence", "must be 1 or more")
        if self.times < 0:
            raise _error("times", "must be 0 (all) or more")

    def _hits(self, count: int) -> bool:
        return count >= self.occurrence and (not self.times or count < self.occurrence + self.times)

    def on_connect(self, conn) -> bool:
        if self.command == "CONNECT" and self._hits(1):
            conn.send_reply(self._reply)
            return True
        return False

    def before_command(self, conn, verb: str, arg: bytes) -> bool:
        if verb == self.command and self._hits(conn.session.counts[verb]):
            conn.send_reply(self._reply)
            return True
        return False


def _parse(text):
    try:
        return replies.parse(text)
    except replies.ReplyError as e:
        raise _error("reply", str(e)) from None


def _error(key: str, problem: str) -> ValueError:
    error = ValueError(problem)
    error.key = key
    return error
