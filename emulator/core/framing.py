"""
Framing: where a message ends, and what its dot-stuffing hides.

A message ends at the first CRLF.CRLF in the byte stream (RFC 5321 section
4.1.1.4), searched in bulk with C{bytes.find} on each read as it arrives,
never line by line in Python.  Only CRLF.CRLF ends it: a bare LF or bare CR
before the dot is content, which keeps the emulator safe from SMTP smuggling.

The same search finds the lines the client dot-stuffed (RFC 5321 section
4.5.2: every CRLF followed by a dot that is not the terminator), so the body
is unstuffed only when it has such a line, with one C{replace} over it.

A BDAT chunk (RFC 3030 section 2) has no terminator and no stuffing: it is
exactly as many bytes as its command said, taken in bulk by L{ChunkReader}.
"""

from __future__ import annotations

_CRLF_DOT = b"\r\n."
_TAIL = 4  # bytes kept from the previous read: enough to hold an undecided CRLF "." CR


class DataReader:
    """Collects one message after C{354} until its terminator.

    The body is read as if a CRLF came before its first byte, so that an
    empty message (C{.} right after C{354}) ends it too, and a dot opening
    the first line is unstuffed like any other.

    @ivar size: bytes of body received (before unstuffing).
    @ivar overflow: the body grew beyond C{max_size}; the content is then
        discarded as it arrives, but the terminator is still looked for.
    """

    def __init__(self, max_size: int = 0):
        self._max = max_size
        self._parts: list[bytes] = []
        self._tail = b"\r\n"  # the last bytes read (at first, the virtual CRLF)
        self._stuffed = False
        self.size = 0
        self.overflow = False

    def feed(self, data: bytes) -> tuple[bytes | None, bytes]:
        """Add C{data}; return C{(body, rest)} once the terminator is seen,
        else C{(None, b"")}.  C{body} is unstuffed (empty after an overflow);
        C{rest} is what followed the terminator (pipelined commands)."""
        self.size += len(data)
        tail = self._tail
        # A terminator that began in the previous read, then one in this read.
        index = self._scan(tail + data[:_TAIL], len(tail))
        if index is not None:
            index -= len(tail)  # relative to data: negative, it began earlier
        else:
            index = self._scan(data, len(data))
        if index is None:
            if not self.overflow:
                self._parts.append(data)
                if self._max and self.size > self._max:
                    self.overflow = True
                    self._parts = []
            self._tail = data[-_TAIL:] if len(data) >= _TAIL else (tail + data)[-_TAIL:]
            return None, b""
        end = index + 2  # the body keeps the CRLF before the dot
        rest = data[index + 5:]
        self.size -= len(data) - end
        if self._max and self.size > self._max:
            self.overflow = True
        if self.overflow:
            return b"", rest
        parts = self._parts
        if end >= 0:
            parts.append(data[:end])
            body = b"".join(parts)
        else:
            body = b"".join(parts)[:end]
        return unstuff(body) if self._stuffed else body, rest

    def take(self, buffer: bytearray) -> bytes | None:
        """As L{feed}, from the connection's input buffer: what follows the
        terminator is left in C{buffer}."""
        data = bytes(buffer)
        buffer.clear()
        body, rest = self.feed(data)
        buffer += rest
        return body

    def _scan(self, buffer: bytes, limit: int) -> int | None:
        """The index of the terminator in C{buffer} if one begins before
        C{limit}; notes every stuffed line on the way.  Stops at a CRLF "."
        whose next bytes have not arrived yet: the next read decides it."""
        find = buffer.find
        index = find(_CRLF_DOT, 0, limit + 2)
        while index != -1:
            after = buffer[index + 3:index + 5]
            if after == b"\r\n":
                return index
            if len(after) < 2 and b"\r\n".startswith(after):
                return None
            self._stuffed = True
            index = find(_CRLF_DOT, index + 3, limit + 2)
        return None


class ChunkReader:
    """Collects one BDAT chunk (RFC 3030 section 2): exactly C{size} bytes,
    whatever they hold.  No line is parsed and nothing unstuffed: a CRLF.CRLF
    inside a chunk is content.  Each read is kept as it came (a slice only
    where the chunk ends inside it) and joined once, at the end.

    @ivar size: bytes of the chunk received so far.
    """

    def __init__(self, size: int, keep: bool = True):
        """@param keep: keep the content; False discards it as it arrives
            (a refused chunk, still read to its end to stay in step)."""
        self._left = size
        self._keep = keep
        self._parts: list[bytes] = []
        self.size = 0

    def feed(self, data: bytes) -> tuple[bytes | None, bytes]:
        """Add C{data}; return C{(chunk, rest)} once the chunk is complete,
        else C{(None, b"")}.  C{chunk} is empty when not kept; C{rest} is
        what followed it (pipelined commands)."""
        left = self._left
        if len(data) < left:
            self._left = left - len(data)
            self.size += len(data)
            if self._keep:
                self._parts.append(data)
            return None, b""
        self._left = 0
        self.size += left
        if not self._keep:
            return b"", data[left:]
        piece, rest = (data, b"") if len(data) == left else (data[:left], data[left:])
        parts = self._parts
        if not parts:
            return piece, rest
        parts.append(piece)
        return b"".join(parts), rest

    def take(self, buffer: bytearray) -> bytes | None:
        """As L{feed}, from the connection's input buffer: only the chunk's
        own bytes are copied out of it (deleting from a bytearray's front is
        cheap), so many chunks pipelined in one read cost linear time."""
        count = min(self._left, len(buffer))
        with memoryview(buffer) as view:
            piece = bytes(view[:count])
        del buffer[:count]
        return self.feed(piece)[0]

    @property
    def done(self) -> bool:
        """The whole chunk has been read (at once for C{BDAT 0})."""
        return self._left == 0


def unstuff(body: bytes) -> bytes:
    """Remove the leading dot that the client added to every line starting
    with a dot (RFC 5321 section 4.5.2, transparency)."""
    if body.startswith(b"."):
        body = body[1:]
    return body.replace(b"\r\n.", b"\r\n")
