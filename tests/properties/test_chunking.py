"""Chunking invariance: any split of a session's input gives the same replies, events and messages."""

import pytest
from hypothesis import given, settings, strategies as st

from emulator.profiles import loader as profiles
from emulator.testing.harness import Harness

import chunking_persona

PROFILES = profiles.names()
COMMANDS = [
    b"EHLO client.example\r\n", b"HELO client\r\n", b"MAIL FROM:<a@example.org>\r\n",
    b"MAIL FROM:<a@example.org> SIZE=100\r\n", b"RCPT TO:<b@example.test>\r\n", b"DATA\r\n",
    b"Subject: x\r\n\r\nbody\r\n..dot\r\n.\r\n", b"RSET\r\n", b"NOOP\r\n", b"VRFY x\r\n", b"HELP\r\n",
    b"STARTTLS\r\n", b"QUIT\r\n", b"BOGUS\r\n", b"x" * 600 + b"\r\n", b"\n", b"MAIL FROM:<a@b\r\n",
    bytes.fromhex("16030100f1010000ed0303"),
]


def run(profile: str, chunks: list[bytes]):
    h = Harness(profile)
    h.connect()
    for chunk in chunks:
        h.send(chunk)
    h.lose()
    events = [(r.event, r.fields) for r in h.transcript.events()]
    return h.transcript.server_bytes(), events, h.messages, h.closed


def boundary_insensitive(name: str) -> bool:
    return not any(q.boundary_sensitive for q in profiles.load(name).quirks)


@settings(deadline=None)
@given(st.sampled_from([p for p in PROFILES if boundary_insensitive(p)]),
       st.lists(st.sampled_from(COMMANDS) | st.binary(max_size=40), max_size=14),
       st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_any_split_gives_the_same_session(profile, pieces, cuts):
    """Feeding a session byte stream whole or cut anywhere yields identical server bytes, events,
    delivered messages and close state (quirks that depend on boundaries opt out)."""
    stream = b"".join(pieces)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0] + points, points + [len(stream)]) if stream[a:b]]
    assert run(profile, [stream] if stream else []) == run(profile, chunks)


# -- BDAT (RFC 3030): counted chunks, cut anywhere ------------------------------------------

_BINARY = st.binary(max_size=60) | st.sampled_from([b"\r\n.\r\n", b".\r\n", b"BDAT 3 LAST\r\n", b"QUIT\r\n", b""])


@pytest.fixture(scope="module")
def chunky(tmp_path_factory):
    return chunking_persona.load(tmp_path_factory.mktemp("chunky"))


def bdat_stream(messages: list[list[bytes]]) -> bytes:
    """A session sending each message as BDAT chunks, the last one with LAST."""
    out = [b"EHLO c\r\n"]
    for chunks in messages:
        out.append(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
        for i, chunk in enumerate(chunks):
            last = b" LAST" if i == len(chunks) - 1 else b""
            out.append(b"BDAT %d%s\r\n" % (len(chunk), last) + chunk)
    out.append(b"QUIT\r\n")
    return b"".join(out)


@settings(deadline=None)
@given(st.lists(st.lists(st.lists(_BINARY, max_size=4).map(b"".join), min_size=1, max_size=4), max_size=3),
       st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_bdat_any_split_gives_the_same_session(chunky, messages, cuts):
    """Messages sent as BDAT chunks of any bytes (CRLF.CRLF, command lines and BDAT lines inside a
    chunk included): fed whole or cut anywhere, the server's bytes, events and messages are the same,
    and each message is exactly its chunks joined."""
    stream = bdat_stream(messages)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0] + points, points + [len(stream)]) if stream[a:b]]
    whole = run(chunky, [stream])
    assert whole == run(chunky, chunks)
    assert [m.data for m in whole[2]] == [b"".join(parts) for parts in messages]
    assert whole[3] == "close"
