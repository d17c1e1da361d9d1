"""
Framing: where a command line ends, and where a message ends.

Commands end at LF (CRLF is canonical; a bare LF is tolerated as most MTAs
do).  A message ends at the first terminator in the byte stream, searched in
bulk with C{bytes.find}, never line by line in Python; dot-unstuffing is two
C{replace}-style passes over the whole body (RFC 5321 section 4.5.2).

By default the only terminator is CRLF.CRLF, which keeps the emulator safe
from SMTP smuggling (bare LF or bare CR before the dot).  A quirk may add the
terminators a historical product accepted.
"""

from __future__ import annotations

# (pattern, how many of its leading bytes belong to the message body)
CRLF_DOT_CRLF = (b"\r\n.\r\n", 2)


class DataReader:
    """Collects one message after C{354} until its terminator.

    The body is searched as if a CRLF came before its first byte, so that an
    empty message (C{.} right after C{354}) ends it too.

    @ivar size: bytes of body received (before unstuffing).
    @ivar overflow: the body grew beyond C{max_size}; the content is then
        discarded as it arrives, but the terminator is still looked for.
    """

    def __init__(self, max_size: int = 0, terminators: tuple = (CRLF_DOT_CRLF,)):
        self._max = max_size
        self._terminators = terminators
        self._longest = max(len(t[0]) for t in terminators)
        self._buf = bytearray(b"\r\n")
        self._scan = 0
        self.size = 0
        self.overflow = False

    def feed(self, data: bytes) -> tuple[bytes | None, bytes]:
        """Add C{data}; return C{(body, rest)} once the terminator is seen,
        else C{(None, b"")}.  C{body} is unstuffed (empty after an overflow);
        C{rest} is what followed the terminator (pipelined commands)."""
        buf = self._buf
        buf += data
        self.size += len(data)
        end = self._find()
        if end is None:
            if self._max and self.size > self._max:
                # Forget the body but its tail, which may hold half a terminator.
                self.overflow = True
                del buf[:len(buf) - self._longest + 1]
                self._scan = 0
            else:
                self._scan = max(len(buf) - self._longest + 1, 0)
            return None, b""
        index, pattern, keep = end
        rest = bytes(buf[index + len(pattern):])
        self.size -= len(pattern) - keep + len(rest)
        if self._max and self.size > self._max:
            self.overflow = True
        if self.overflow:
            return b"", rest
        return unstuff(bytes(buf[2:index + keep])), rest

    def _find(self):
        best = None
        for pattern, keep in self._terminators:
            index = self._buf.find(pattern, self._scan)
            if index != -1 and (best is None or index < best[0]):
                best = (index, pattern, keep)
        return best


def unstuff(body: bytes) -> bytes:
    """Remove the leading dot that the client added to every line starting
    with a dot (RFC 5321 section 4.5.2, transparency)."""
    if body.startswith(b"."):
        body = body[1:]
    return body.replace(b"\r\n.", b"\r\n")
