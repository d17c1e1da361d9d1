"""
Micro-benchmarks of the sans-IO core (pytest-benchmark).  Not part of the
test suite: `make bench` runs them with --benchmark-only, and they print
figures; nothing here asserts a time.
"""

from emulator.profiles import loader as profiles
from emulator.core.replies import render
from emulator.core.connection import Server, ServerConnection

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


def test_one_mebibyte_data(benchmark):
    """A 1 MiB message arriving in 64 KiB segments: bulk search, never quadratic."""
    chunks = [MEBIBYTE[i:i + 65536] for i in range(0, len(MEBIBYTE), 65536)]

    def run():
        conn = ServerConnection(SERVER, peer=("127.0.0.1", 1))
        conn.connect()
        conn.receive(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
        for chunk in chunks:
            conn.receive(chunk)

    benchmark(run)


def test_ehlo_rendering(benchmark):
    """EHLO: keyword list, hooks, multi-line rendering."""
    conn = ServerConnection(SERVER, peer=("127.0.0.1", 1))
    conn.connect()
    benchmark(conn.receive, b"EHLO client.example\r\n")


def test_render_multi_line(benchmark):
    """The one place multi-line replies are rendered."""
    reply = SERVER.profile.replies["help"]
    benchmark(render, reply)
