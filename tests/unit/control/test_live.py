"""The console's live feed (emulator.control.live): server-sent events with what changed, on a fake clock."""

import json

from twisted.internet import defer
from twisted.internet.task import Clock

from emulator.capture.transcript import Transcript
from emulator.control import live
from emulator.control.listeners import Control
from emulator.host.emulation import Emulation
from emulator.profiles import loader as profiles


class Request:
    """What the feed uses of a twisted.web request: headers, writes, and the end of the response."""

    def __init__(self):
        self.headers, self.written, self.finished = {}, b"", False
        self._gone = defer.Deferred()

    def setHeader(self, name, value):
        self.headers[name] = value

    def write(self, data):
        self.written += data

    def notifyFinish(self):
        return self._gone

    def finish(self):
        self.finished = True
        self._gone.callback(None)

    def events(self):
        """The (event, data) pairs written so far, and forget them."""
        found = []
        for block in self.written.decode().split("\n\n"):
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":")
            if "event" in fields:
                found.append((fields["event"], json.loads(fields["data"])))
        self.written = b""
        return found


def feed(tmp_path):
    clock = Clock()
    control = Control(Emulation(profiles.load("ims55sp4"), state_dir=tmp_path), reactor=clock)
    return clock, control, live.Feed(control, lambda: {"matrix": None})


def test_a_console_gets_a_snapshot_then_only_changes(tmp_path):
    """The first event is everything; then a session that begins, grows and ends is sent each time it
    changed, and nothing at all is sent while nothing changes."""
    clock, control, events = feed(tmp_path)
    request = Request()
    events.subscribe(request)
    assert request.headers["content-type"].startswith("text/event-stream")
    ((name, snapshot),) = request.events()
    assert name == "snapshot" and snapshot["sessions"] == [] and snapshot["faults"] == []
    assert snapshot["messages"] == {"count": 0, "latest": None} and snapshot["matrix"] is None
    clock.advance(2)
    assert request.events() == []
    store = control.base.transcripts
    t = Transcript("s1", "ims55sp4", "192.0.2.1:1025", 0.0, "tcp:2525")
    store.begin(t)
    clock.advance(live.TICK)
    ((name, update),) = request.events()
    assert name == "update" and [(s["session"], s["outcome"]) for s in update["sessions"]] == [("s1", "open")]
    assert set(update) == {"sessions"}
    t.sent(0, b"220 ready\r\n")
    clock.advance(live.TICK)
    assert request.events()[0][1]["sessions"][0]["last_reply"] == "220 ready"
    t.event(0, "closed", reason="ConnectionDone")
    store.finish(t)
    clock.advance(live.TICK)
    assert request.events()[0][1]["sessions"][0]["ended"] == "client hung up"
    clock.advance(2)
    assert request.events() == []


def test_faults_and_resets_are_sent(tmp_path):
    """A fault added is sent as the new list; a reset sends the ids of the sessions it forgot."""
    clock, control, events = feed(tmp_path)
    request = Request()
    events.subscribe(request)
    control.base.transcripts.finish(Transcript("s1"))
    clock.advance(live.TICK)
    request.events()
    control.add_fault("rcpt:reply=452 4.5.3 Too many recipients")
    clock.advance(live.TICK)
    assert request.events() == [("update", {"faults": ["rcpt:reply=452 4.5.3 Too many recipients"]})]
    control.reset()
    clock.advance(live.TICK)
    assert request.events() == [("update", {"removed": ["s1"]})]


def test_quiet_streams_get_a_keepalive_and_the_clock_stops_with_the_last_console(tmp_path):
    """After KEEPALIVE quiet seconds a comment line goes out; when the last console leaves, nothing is
    scheduled any more; closing the feed ends every stream."""
    clock, control, events = feed(tmp_path)
    first, second = Request(), Request()
    events.subscribe(first)
    events.subscribe(second)
    first.written = b""
    clock.advance(live.KEEPALIVE)
    assert first.written == b": keepalive\n\n"
    first.finish()
    assert clock.getDelayedCalls()
    events.close()
    assert second.finished and not clock.getDelayedCalls() and events.consoles == []
