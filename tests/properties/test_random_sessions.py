"""10,000 random-byte sessions through the core: no exception, only well-formed output."""

import random
import re

from emulator.profiles import loader as profiles
from emulator.testing.harness import Harness
from emulator.core.connection import Server

REPLY_LINE = re.compile(rb"\A[2-5][0-9][0-9][ -]?[^\r\n]*\Z")
WORDS = [b"EHLO x\r\n", b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<c@d>\r\n", b"DATA\r\n", b".\r\n", b"\r\n",
         b"STARTTLS\r\n", b"RSET\r\n", b"QUIT\r\n", b"\n", b"\r", b".", b"\x16\x03\x01"]


def test_ten_thousand_random_sessions():
    """Seeded random bytes and SMTP fragments, in random segments, never break a session:
    every byte the server writes belongs to a well-formed reply line."""
    rng = random.Random(20261123)
    servers = [Server(profiles.load(name)) for name in profiles.names()]
    for i in range(10_000):
        h = Harness(None, server=servers[i % len(servers)], session_id=f"r{i}")
        h.connect()
        for _ in range(rng.randrange(1, 8)):
            if rng.random() < 0.5:
                chunk = rng.choice(WORDS)
            else:
                chunk = rng.randbytes(rng.randrange(0, 64))
            h.send(chunk)
        h.lose()
        out = h.transcript.server_bytes()
        assert out == b"" or out.endswith(b"\r\n")
        for line in out.split(b"\r\n")[:-1]:
            assert REPLY_LINE.match(line), (i, line)
