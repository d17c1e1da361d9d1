"""
The reply catalogue: code asks for a reply by name, the profile gives the text.

A catalogue entry is one line (C{"250 OK"}) or several lines of the same code
(C{["220-host Microsoft SMTP MAIL ready", "220 ESMTP spoken here"]}).  Texts
are templates with named fields (C{{hostname}}, C{{sender}}, ...); only the
fields in L{FIELDS} exist, and a profile that names another one does not load.

Multi-line replies are rendered in one place, L{render}, so that framing
quirks (a missing space after the code, bare LF line ends) change one function.
"""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass

# Every field a reply template may use, with what it holds.
FIELDS = {
    "hostname": "the server's host name (profile or --hostname)",
    "peer_ip": "the client's IP address",
    "peer_port": "the client's TCP port",
    "helo": "the argument the client gave to HELO or EHLO",
    "sender": "the reverse-path of MAIL FROM, without angle brackets",
    "recipient": "the forward-path of RCPT TO, without angle brackets",
    "size": "the SIZE= parameter of MAIL FROM; the size of a BDAT chunk",
    "parameters": "the parameters of MAIL FROM after the path, as sent (SIZE=1460 AUTH=<a>)",
    "verb": "the command verb as the client sent it",
    "argument": "the command argument as the client sent it",
    "version": "the profile's product version string",
    "date": "the session's start time in RFC 5322 form (Tue, 03 Mar 2026 10:00:00 +0000)",
    "date_unpadded": "the same with the day of the month not zero-padded (Tue, 3 Mar 2026 ...), as Windows wrote it",
    "queue_id": "an identifier for the accepted message",
    "user": "the user name of an authentication attempt",
    "mechanism": "the SASL mechanism named in AUTH",
    "challenge": "a base64 server challenge",
    "limit": "the limit that was exceeded",
}

#: The fields that show the session's date: the host formats it only for a
#: profile whose replies use one of them.
DATE_FIELDS = frozenset({"date", "date_unpadded"})
_PADDED_DAY = re.compile(r"\A([A-Za-z]{3}, )0(?=[0-9] )")

_LINE = re.compile(r"\A([2-5][0-9][0-9])(?:([ -])(.*))?\Z", re.DOTALL)
_FORMATTER = string.Formatter()


class ReplyError(ValueError):
    """A catalogue entry that cannot be a reply.  The message says why."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: a code and its text lines (without the code).

    C{bare} marks a last line that was the code alone (C{"354"}), which
    renders without the space that C{"354 "} keeps.  C{last_separator} and
    C{line_end} are for framing quirks: what follows the code on the last
    line (RFC 5321 4.2.1: a space) and what ends each line (CRLF)."""

    code: int
    lines: tuple[str, ...]
    bare: bool = False
    last_separator: str = " "
    line_end: str = "\r\n"

    def format(self, fields: dict) -> "Reply":
        """Fill the template fields of every line."""
        lines = tuple(line.format_map(fields) for line in self.lines)
        return Reply(self.code, lines, self.bare, self.last_separator, self.line_end)


def parse(entry: str | list) -> Reply:
    """Turn a catalogue entry into a L{Reply} template, or raise L{ReplyError}.

    Each line must start with a three-digit code from 200 to 599 followed by
    a space, a hyphen or nothing; all lines of an entry share the code.
    """
    raw = [entry] if isinstance(entry, str) else entry
    if not isinstance(raw, list) or not raw or not all(isinstance(line, str) for line in raw):
        raise ReplyError("must be a quoted string or a list of quoted strings")
    code, lines = None, []
    for line in raw:
        match = _LINE.match(line)
        if match is None:
            raise ReplyError(f"{line!r} does not start with a reply code 200-599")
        if code is not None and match.group(1) != code:
            raise ReplyError(f"mixes reply codes {code} and {match.group(1)}")
        if "\r" in line or "\n" in line:
            raise ReplyError("a line must not contain CR or LF; use a list for several lines")
        try:
            line.encode("latin-1")
        except UnicodeEncodeError:
            raise ReplyError(f"{line!r} has characters outside Latin-1") from None
        _check_fields(line)
        code = match.group(1)
        lines.append(match.group(3) or "")
    return Reply(int(code), tuple(lines), bare=match.group(2) is None)


def _check_fields(line: str) -> None:
    try:
        parsed = list(_FORMATTER.parse(line))
    except ValueError as e:
        raise ReplyError(f"{line!r}: {e} (write {{{{ and }}}} for literal braces)") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in FIELDS or spec or conversion:
            raise ReplyError(
                f"{line!r}: unknown field {{{name}}}; known fields: {', '.join(sorted(FIELDS))}"
            )


@functools.lru_cache(maxsize=4)
def date_fields(date: str) -> dict[str, str]:
    """The date fields of a session that started at C{date}, the RFC 5322
    form the host gives: as it is, and with the day not zero-padded (the
    IIS 5.0/6.0 banner, C{ready at  Wed, 7 Apr 2004 ...}: docs/sources.md §6.1).
    Remembered for the last few dates (the sessions of one second share
    one); the caller copies the dict, never changes it."""
    return {"date": date, "date_unpadded": _PADDED_DAY.sub(r"\1", date)}


def render(reply: Reply, *, separator: bytes = b"-") -> bytes:
    """The bytes of C{reply}: C{250-first}, ..., C{250 last} (RFC 5321 4.2.1).

    A last line written as the bare code renders without a space, as RFC
    5321 allows.
    """
    code = str(reply.code).encode("ascii")
    line_end = reply.line_end.encode("latin-1")
    last_separator = reply.last_separator.encode("latin-1")
    last = len(reply.lines) - 1
    out = []
    for i, text in enumerate(reply.lines):
        if i == last and reply.bare:
            out.append(code + line_end)
        else:
            out.append(code + (separator if i < last else last_separator) + text.encode("latin-1") + line_end)
    return b"".join(out)
