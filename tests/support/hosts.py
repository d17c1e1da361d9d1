"""Stand-ins for a host's surroundings, shared by tests of several packages:
an interpreter that notes its calls, a clock as reactor, a log stream, and a
bounded reader of a child process's lines."""

import re
import selectors
import time

from twisted.internet.task import Clock

from emulator.capture.transcript import Transcript
from emulator.host.interpreter import Interpreter


class Wire(Interpreter):
    """A host that notes each call to its wire, at time 5."""

    def __init__(self, fail_storage=False):
        self.transcript = Transcript("s1")
        self.calls = []
        self.fail_storage = fail_storage

    def _now(self):
        return 5

    def _write(self, data):
        self.calls.append(("write", data))

    def _close(self, abort):
        self.calls.append(("close", abort))

    def _start_tls(self):
        self.calls.append(("start_tls",))

    def _delay(self, seconds, rest):
        self.calls.append(("delay", seconds, rest))

    def _store(self, message):
        if self.fail_storage:
            raise OSError("disk full")
        self.calls.append(("store", message.data))
        return "1.M1.host"

    def _send_upstream(self, data):
        self.calls.append(("upstream", data))

    def _close_upstream(self):
        self.calls.append(("close_upstream",))


class Reactor(Clock):
    """A Clock is enough of a reactor for the adapter."""


class _Sink:
    def __init__(self):
        self.lines = []

    def write(self, text):
        self.lines.append(text)

    def flush(self):
        pass


def read_lines_until(stream, count, pattern, deadline):
    """Lines from C{stream} until C{count} of them match C{pattern}, or the deadline."""
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    lines, buffer = [], b""
    while sum(1 for line in lines if re.search(pattern, line)) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; got {lines}"
        if selector.select(left):
            chunk = stream.read1(4096)
            assert chunk, f"process ended; got {lines}"
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines += [line.decode() for line in complete]
    return lines
