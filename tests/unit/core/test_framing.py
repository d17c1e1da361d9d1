"""End-of-data detection and dot-unstuffing."""

from hypothesis import given, strategies as st

from emulator.core.framing import DataReader, unstuff


def test_message_ends_at_crlf_dot_crlf_and_rest_is_returned():
    """The body ends before '.', and pipelined bytes after it are handed back."""
    reader = DataReader()
    assert reader.feed(b"Subject: a\r\n\r\nbody\r\n.\r\nQUIT\r\n") == (b"Subject: a\r\n\r\nbody\r\n", b"QUIT\r\n")


def test_empty_message():
    """A dot right after 354 is an empty message."""
    assert DataReader().feed(b".\r\n") == (b"", b"")


def test_terminator_split_across_segments():
    """The terminator is found whatever the segment boundaries."""
    reader = DataReader()
    assert reader.feed(b"a\r") == (None, b"")
    assert reader.feed(b"\n.") == (None, b"")
    assert reader.feed(b"\r\n") == (b"a\r\n", b"")


def test_bare_lf_dot_does_not_end_the_message():
    """SMTP smuggling: <LF>.<LF> and <LF>.<CRLF> are content, not the end."""
    reader = DataReader()
    assert reader.feed(b"a\n.\nb\n.\r\nc\r.\r\n") == (None, b"")
    assert reader.feed(b"\r\n.\r\n") == (b"a\n.\nb\n.\r\nc\r.\r\n\r\n", b"")


def test_dot_unstuffing():
    """RFC 5321 4.5.2: a leading dot added by the client is removed."""
    assert unstuff(b"..a\r\n..\r\n.b\r\n") == b".a\r\n.\r\nb\r\n"


def test_oversized_message_is_discarded_but_still_ended():
    """Past the limit the content is dropped, the terminator still found."""
    reader = DataReader(max_size=10)
    assert reader.feed(b"x" * 100) == (None, b"")
    assert reader.feed(b"\r\n.\r\nNOOP\r\n") == (b"", b"NOOP\r\n")
    assert reader.overflow


@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=6))
def test_any_split_gives_the_same_body(body, cuts):
    """Feeding a message in any pieces gives the body and rest of feeding it whole."""
    stream = body.replace(b"\r\n.\r\n", b"\r\n..\r\n") + b"\r\n.\r\nTAIL"
    whole = DataReader().feed(stream)
    reader, result = DataReader(), None
    points = sorted({c % (len(stream) + 1) for c in cuts})
    for start, end in zip([0] + points, points + [len(stream)]):
        got = reader.feed(stream[start:end])
        if got[0] is not None:
            result = (got[0], got[1] + stream[end:])
            break
    assert result == whole


def test_oversized_message_in_one_segment_is_refused():
    """The limit holds when the whole message and its end arrive at once."""
    reader = DataReader(max_size=10)
    assert reader.feed(b"x" * 50 + b"\r\n.\r\n") == (b"", b"")
    assert reader.overflow


def test_message_of_exactly_the_limit_is_accepted():
    """A body of exactly max_size bytes is within the limit."""
    assert DataReader(max_size=10).feed(b"12345678\r\n.\r\n") == (b"12345678\r\n", b"")


def _naive_read(stream: bytes) -> tuple[bytes, bytes] | None:
    """The definition, with nothing clever: the body is everything before the
    first CRLF.CRLF of CRLF + stream, every CRLF "." inside it unstuffed."""
    index = (b"\r\n" + stream).find(b"\r\n.\r\n")
    if index == -1:
        return None
    body = (b"\r\n" + stream)[:index + 2].replace(b"\r\n.", b"\r\n")[2:]
    return body, stream[index + 3:]


@given(st.lists(st.sampled_from([b"\r\n", b".", b"..", b"\r", b"\n", b"a", b"\r\n.\r\n", b"\r\n..\r\n"]), max_size=40),
       st.lists(st.integers(0, 200), max_size=8))
def test_reader_agrees_with_the_definition_however_the_bytes_arrive(tokens, cuts):
    """Body, rest and unstuffing match the plain definition of RFC 5321
    4.1.1.4 and 4.5.2 for dot-heavy streams cut at any points: a stuffed line
    or the terminator split between reads is still seen."""
    stream = b"".join(tokens) + b"\r\n.\r\nNOOP\r\n"
    reader, result, start = DataReader(), None, 0
    for end in sorted({c % (len(stream) + 1) for c in cuts}) + [len(stream)]:
        body, rest = reader.feed(stream[start:end])
        if body is not None:
            result = (body, rest + stream[end:])
            break
        start = end
    assert result == _naive_read(stream)


def test_unstuffed_only_when_a_line_was_stuffed():
    """Dots inside lines are content; a stuffed line split across reads
    (CRLF in one, the dots in the next) is still unstuffed."""
    reader = DataReader()
    assert reader.feed(b"a.b\r\n") == (None, b"")
    assert reader.feed(b"c\r\n.\r\n") == (b"a.b\r\nc\r\n", b"")
    reader = DataReader()
    assert reader.feed(b"a\r\n") == (None, b"")
    assert reader.feed(b"..b\r\n.") == (None, b"")
    assert reader.feed(b"\r\n") == (b"a\r\n.b\r\n", b"")
