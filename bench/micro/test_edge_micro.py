"""
Micro-benchmarks of the Twisted edges in memory (pytest-benchmark): a whole
session through the server edge and through the middlebox edge, on a
StringTransport and a fake clock, so what is measured is the edge's own
work (the core, the interpreter of its actions, the transcript) without a
socket.  Figures only; nothing here asserts a time.
"""

import io

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from emulator import middlebox
from emulator.host.emulation import Emulation
from emulator.profiles import loader as profiles

SESSION = [b"EHLO client.example\r\n", b"MAIL FROM:<a@example.org> SIZE=400\r\n", b"RCPT TO:<b@example.test>\r\n",
           b"DATA\r\n", b"Subject: x\r\n\r\n" + b"hello world\r\n" * 20 + b".\r\n", b"QUIT\r\n"]
PIX_SESSION = [b"HELO client.example\r\n"] + SESSION[1:]


def edge_session(factory, clock, session):
    proto = factory.buildProtocol(None)
    proto.makeConnection(StringTransport())
    for data in session:
        proto.dataReceived(data)
    clock.advance(0)
    proto.connectionLost(None)


def factory_of(box=None):
    clock = Clock()
    emulation = Emulation(profiles.load("ims55sp4"), middlebox=middlebox.load(box) if box else None)
    emulation.events.format, emulation.events.stream = "json", io.StringIO()
    return emulation.factory("tcp:0", reactor=clock), clock


def test_server_edge_session(benchmark):
    """A one-message session through the server edge: connectionMade,
    dataReceived per command, connectionLost (memory stores, JSON log line)."""
    factory, clock = factory_of()
    benchmark(edge_session, factory, clock, SESSION)


def test_middlebox_edge_session(benchmark):
    """The same session through a PIX in front of the emulated server, both
    legs in memory."""
    factory, clock = factory_of("pix-mailguard")
    benchmark(edge_session, factory, clock, PIX_SESSION)


LINE = dict(session="20261202T075900-000001", peer="127.0.0.1:46710", profile="ims55sp4", messages=1,
            seconds=0.012, end="ConnectionDone: Connection was closed cleanly.")


def test_connection_log_line_direct(benchmark, tmp_path):
    """The per-connection text line as twistd -n writes it: formatted by
    EventLog and written straight to the stream (to a file here)."""
    from emulator.host.edge import EventLog

    with open(tmp_path / "log", "w") as stream:
        benchmark(EventLog("text", stream, direct=True).emit, "connection", **LINE)


def test_connection_log_line_through_twisted_logger(benchmark, tmp_path):
    """The same line through twisted.logger and twistd's text observer
    (what the direct line replaces; --logfile still takes this way)."""
    from twisted.logger import Logger, textFileLogObserver

    with open(tmp_path / "log", "w") as stream:
        log = Logger(namespace="emulator", observer=textFileLogObserver(stream))
        text = " ".join(f"{k}={v:.3f}" if type(v) is float else f"{k}={v}" for k, v in LINE.items())
        benchmark(log.info, "{event} {text}", event="connection", text=text)
