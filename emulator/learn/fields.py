"""
Template fields in captured replies: the bytes that are the server's host
name, the client's address or HELO name, a date, a queue id, or the
client's own words echoed back, become C{{field}} so that the emulator
renders them anew (L{emulator.core.replies.FIELDS}).

Two kinds:
 - I{values} known from the session (the host name, the client's IP address,
   the sender the client gave): replaced where the exact bytes appear as a
   whole token;
 - I{volatile} fields recognised by their shape (L{VOLATILE}: dates and
   queue ids), which differ in every session; L{normalize} puts them back to
   their field names so that two sessions compare (C{emulator diff}).
"""

from __future__ import annotations

import re

_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
# The date shapes servers put in banners: RFC 5322 (Exim, Sendmail, IIS:
# "Mon, 23 Nov 2026 10:00:00 +0000") and the C asctime form
# ("Mon Nov 23 10:00:00 2026").  The emulator renders RFC 5322.
_DATE = re.compile(
    rf"(?:{_DAY},?\s+)?\d{{1,2}}\s+{_MONTH}\s+\d{{4}}\s+\d{{1,2}}:\d{{2}}(?::\d{{2}})?(?:\s+(?:[+-]\d{{4}}|UT|GMT|[A-Z]{{3}}))?"
    rf"|{_DAY}\s+{_MONTH}\s+\d{{1,2}}\s+\d{{1,2}}:\d{{2}}:\d{{2}}\s+\d{{4}}")
# Queue ids where a server says what it queued (group "id").  The token
# shape also takes the emulator's own ids (C{20261123T100000-mb000001.1}).
_TOKEN = r"[0-9A-Za-z](?:[0-9A-Za-z._-]*[0-9A-Za-z])?"
_QUEUE_ID = re.compile(
    rf"(?i:queued as|queue id|id=|message id is)\s*(?P<id>{_TOKEN})"  # Postfix, Exim, many
    rf"|<(?P<angle>{_TOKEN})@[^>\s]+>\s+(?i:queued)")  # Exchange 2000/2003 "<id@host> Queued mail"
VOLATILE = ("date", "queue_id")


def _volatile(text: str) -> list[tuple[int, int, str]]:
    spans = [(m.start(), m.end(), "date") for m in _DATE.finditer(text)]
    for m in _QUEUE_ID.finditer(text):
        group = "id" if m.group("id") is not None else "angle"
        spans.append((m.start(group), m.end(group), "queue_id"))
    return spans


def _whole(value: str) -> re.Pattern:
    """C{value} as a whole token: not inside a longer name or number (a
    dot ending a sentence may follow)."""
    return re.compile(rf"(?<![A-Za-z0-9-])(?<![A-Za-z0-9]\.){re.escape(value)}(?![A-Za-z0-9-])(?!\.[A-Za-z0-9])")


def escape(text: str) -> str:
    """Literal text as a reply template (braces doubled)."""
    return text.replace("{", "{{").replace("}", "}}")


def templatize(text: str, values: dict[str, str], volatile: tuple[str, ...] = VOLATILE) -> str:
    """C{text} (one reply line, without its code) as a template: the
    C{volatile} fields found by shape, then each of C{values} (field ->
    the bytes it had in this session; longer values first, empty ones
    never) where it appears as a whole token; the rest literal."""
    spans: list[tuple[int, int, str]] = []

    def take(start: int, end: int, name: str) -> None:
        if start < end and all(end <= a or start >= b for a, b, _ in spans):
            spans.append((start, end, name))

    for start, end, name in _volatile(text):
        if name in volatile:
            take(start, end, name)
    for name, value in sorted(values.items(), key=lambda item: -len(item[1] or "")):
        if value:
            for m in _whole(value).finditer(text):
                take(m.start(), m.end(), name)
    out, at = [], 0
    for start, end, name in sorted(spans):
        out += [escape(text[at:start]), "{" + name + "}"]
        at = end
    out.append(escape(text[at:]))
    return "".join(out)


def normalize(text: str) -> str:
    """C{text} with its dates and queue ids replaced by C{{date}} and
    C{{queue_id}} (braces in the rest doubled): what two sessions of the
    same server share."""
    return templatize(text, {})
