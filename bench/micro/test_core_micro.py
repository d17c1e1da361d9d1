"""
Micro-benchmarks of the sans-IO core (pytest-benchmark).  Not part of the
test suite: `make bench` runs them with --benchmark-only, and they print
figures; nothing here asserts a time.
"""

import sys
from pathlib import Path

from emulator.profiles import loader as profiles
from emulator.core.replies import render
from emulator.core.connection import Server, ServerConnection

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "support"))
import chunking_persona  # noqa: E402 (tests/support/chunking_persona.py: a persona with CHUNKING)

SERVER = Server(profiles.load("ims55sp4"))
SESSION = [b"EHLO client.example\r\n", b"MAIL FROM:<a@example.org> SIZE=400\r\n", b"RCPT TO:<b@example.test>\r\n",
           b"DATA\r\n", b"Subject: x\r\n\r\n" + b"hello world\r\n" * 20 + b".\r\n", b"QUIT\r\n"]
MEBIBYTE = (b"x" * 76 + b"\r\n") * (1024 * 1024 // 78) + b".\r\n"


def session():
    conn = ServerConnection(SERVER, peer=("127.0.0.1", 1))
    conn.connect()
    for data in SESSION:
        conn.receive(data)
    conn.connection_lost()


def test_whole_session(benchmark):
    """A one-message session through connect/receive/connection_lost."""
    benchmark(session)


def segmented_session(server, envelope: bytes, stream: bytes):
    """A run: connect, send C{envelope}, then C{stream} in 64 KiB segments."""
    segments = [stream[i:i + 65536] for i in range(0, len(stream), 65536)]

    def run():
        conn = ServerConnection(server, peer=("127.0.0.1", 1))
        conn.connect()
        conn.receive(envelope)
        for segment in segments:
            conn.receive(segment)

    return run


ENVELOPE = b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"


def test_one_mebibyte_data(benchmark):
    """A 1 MiB message arriving in 64 KiB segments: bulk search, never quadratic."""
    benchmark(segmented_session(SERVER, ENVELOPE + b"DATA\r\n", MEBIBYTE))


def test_one_mebibyte_bdat(benchmark, tmp_path_factory):
    """The same 1 MiB by BDAT (RFC 3030), one chunk in the same 64 KiB segments: counted, never
    searched or unstuffed; issue 16 asks that it cost no more than DATA."""
    server = Server(chunking_persona.load(tmp_path_factory.mktemp("chunky")))
    body = MEBIBYTE[:-3]
    benchmark(segmented_session(server, ENVELOPE, b"BDAT %d LAST\r\n" % len(body) + body))


def test_one_mebibyte_bdat_in_pipelined_chunks(benchmark, tmp_path_factory):
    """1 MiB as 256 BDAT chunks of 4 KiB, commands and chunks pipelined in 64 KiB segments: linear,
    however many chunks a read holds."""
    server = Server(chunking_persona.load(tmp_path_factory.mktemp("chunky")))
    body = MEBIBYTE[:-3]
    pieces = [body[i:i + 4096] for i in range(0, len(body), 4096)]
    stream = b"".join(b"BDAT %d%s\r\n" % (len(p), b" LAST" if i == len(pieces) - 1 else b"") + p
                      for i, p in enumerate(pieces))
    benchmark(segmented_session(server, ENVELOPE, stream))


def test_ehlo_rendering(benchmark):
    """EHLO: keyword list, hooks, multi-line rendering."""
    conn = ServerConnection(SERVER, peer=("127.0.0.1", 1))
    conn.connect()
    benchmark(conn.receive, b"EHLO client.example\r\n")


def test_render_multi_line(benchmark):
    """The one place multi-line replies are rendered."""
    reply = SERVER.profile.replies["help"]
    benchmark(render, reply)
