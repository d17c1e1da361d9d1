"""AUTH and XAUTH under arbitrary input: every line of an exchange gets exactly one reply and the
session goes on, and any split of an AUTH session's bytes gives the same session."""

import base64
import struct

from hypothesis import given, settings, strategies as st

from emulator.profiles import loader as profiles
from emulator.testing.harness import Harness
from emulator.core.connection import Server

KB_NEGOTIATE = b"TlRMTVNTUAABAAAAt5IAQAcABwAgAAAAAAAAAAAAAABUSU1EVU1QAAAAAAAAAAA="
AUTHENTICATING = [p for p in profiles.names() if {"AUTH", "XAUTH"} & set(profiles.load(p).commands)]
LINE = st.binary(max_size=400).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
# Tokens that pass base64 and the NTLMSSP signature check, to reach the token parsers.
NTLM_TOKEN = st.builds(lambda kind, body: b"NTLMSSP\x00" + struct.pack("<I", kind) + body,
                       st.sampled_from([1, 2, 3]), st.binary(max_size=200))
RESPONSE = LINE | st.binary(max_size=300).map(base64.b64encode) | NTLM_TOKEN.map(base64.b64encode)
# The states an exchange can be in when the next line arrives.
STATES = {
    "command": [],
    "login user": [b"AUTH LOGIN\r\n"],
    "login password": [b"AUTH LOGIN dGVzdGVy\r\n"],
    "ntlm negotiate": [b"AUTH NTLM\r\n"],
    "ntlm authenticate": [b"AUTH NTLM " + KB_NEGOTIATE + b"\r\n"],
    "xauth authenticate": [b"XAUTH NTLM " + KB_NEGOTIATE + b"\r\n"],
}


def codes(out: bytes) -> list[bytes]:
    """The codes of the complete replies in C{out} (single-line replies only, as AUTH's are)."""
    assert out.endswith(b"\r\n"), out
    lines = out[:-2].split(b"\r\n")
    assert all(len(line) >= 3 and line[:3].isdigit() and line[3:4] in (b"", b" ") for line in lines), lines
    return [line[:3] for line in lines]


@settings(deadline=None)
@given(st.sampled_from(AUTHENTICATING), st.sampled_from(sorted(STATES)), st.sampled_from([b"AUTH ", b"XAUTH ", b""]),
       RESPONSE)
def test_any_line_in_any_auth_state_gets_one_reply(profile, state, prefix, line):
    """Whatever line arrives at any step of an AUTH/XAUTH exchange (or as the command's own
    argument), the server sends exactly one reply, never crashes, and reads commands afterwards."""
    h = Harness(profile)
    h.connect()
    h.send(b"EHLO c\r\n")
    for step in STATES[state]:
        h.send(step)
    assert len(codes(h.send(prefix + line + b"\r\n"))) == 1
    if h.conn.phase.value == "line":  # still inside an exchange: cancel it
        assert codes(h.send(b"*\r\n")) == [b"501"]
    assert codes(h.send(b"NOOP\r\n")) == [b"250"]


AUTH_PIECES = [
    b"EHLO c\r\n", b"AUTH LOGIN\r\n", b"AUTH LOGIN dGVzdGVy\r\n", b"dGVzdGVy\r\n", b"c2VjcmV0\r\n", b"*\r\n",
    b"%%%\r\n", b"AUTH NTLM " + KB_NEGOTIATE + b"\r\n", b"XAUTH NTLM\r\n", KB_NEGOTIATE + b"\r\n",
    b"AUTH PLAIN\r\n", b"AUTH\r\n", b"A" * 13000 + b"\r\n", b"A" * 700, b"MAIL FROM:<a@b>\r\n", b"NOOP\r\n",
    b"RSET\r\n",
]


def run(profile: str, chunks: list[bytes]):
    h = Harness(None, server=Server(profiles.load(profile), random_bytes=lambda n: b"\x07" * n))
    h.connect()
    for chunk in chunks:
        h.send(chunk)
    h.lose()
    return h.transcript.server_bytes(), [(r.event, r.fields) for r in h.transcript.events()], h.conn.session.auth_user


@settings(deadline=None)
@given(st.sampled_from(AUTHENTICATING), st.lists(st.sampled_from(AUTH_PIECES), max_size=12),
       st.lists(st.integers(min_value=0, max_value=30000), max_size=10))
def test_any_split_of_an_auth_session_gives_the_same_session(profile, pieces, cuts):
    """AUTH sessions (prompts, responses, cancels, over-long lines) cut anywhere give the same
    server bytes, events and login as fed whole (a seedless NTLM challenge is random, so the
    seed is fixed through Server.random_bytes)."""
    stream = b"".join(pieces)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0] + points, points + [len(stream)]) if stream[a:b]]
    assert run(profile, [stream] if stream else []) == run(profile, chunks)
