"""
The console's live feed (C{GET /events}): server-sent events that carry
what changed in the sessions, listeners, faults and messages of a
L{Control}.

Why server-sent events and not a short poll: a poll costs every open
console one request (and the whole session list, up to 1000 summaries)
every second, changed or not, and still shows a session up to a second
late; an event stream is one response per console that carries only the
sessions that changed, when they change, and the browser's C{EventSource}
reconnects by itself after a restart of the server.  twisted.web holds such
a response open without a thread.

How a change is found: every L{TICK} seconds, while at least one console
is connected, a fingerprint of each session (its record count and whether
it is open) and of the listeners, faults, messages and error count is
compared with the one last sent to each console.  Nothing is added to the
per-byte path of a session (the transcript store has no change hooks, and
a call per record would cost every session, watched or not); with no
console connected, nothing runs at all.

Events: C{snapshot} first (everything), then C{update} (only what
changed).  Both are JSON objects: C{sessions} (summaries, as C{GET
/sessions} has them), the keys of L{Feed.state}, and C{matrix} (the report's
link, in the snapshot); an C{update} has only the keys that changed, and
C{removed} (the ids of sessions forgotten by a reset).
"""

from __future__ import annotations

import json

from twisted.internet import task
from twisted.web import server

from emulator.control.listeners import Control

#: Seconds between two looks for changes (only while a console is connected).
TICK = 0.25
#: Seconds of silence after which a comment line is sent, so that a dropped
#: console is noticed and proxies keep the stream open.
KEEPALIVE = 15.0


class _Console:
    """One connected console: its response, and what it was last sent."""

    def __init__(self, request, now: float):
        self.request = request
        self.sessions: dict[str, tuple] = {}
        self.state: dict[str, object] = {}
        self.written = now  # when it was last written to


class Feed:
    """Server-sent events for every console connected to one control API."""

    def __init__(self, control: Control, extra=lambda: {}):
        self.control = control
        self.extra = extra  # more snapshot keys (the matrix report link)
        self.consoles: list[_Console] = []
        self.sent = 0
        self._loop: task.LoopingCall | None = None

    def subscribe(self, request):
        """Answer C{request} with the event stream; it stays open."""
        request.setHeader("content-type", "text/event-stream; charset=utf-8")
        request.setHeader("cache-control", "no-store")
        console = _Console(request, self.control.reactor.seconds())
        self.consoles.append(console)
        request.notifyFinish().addBoth(lambda _: self._gone(console))
        request.write(b"retry: 2000\n\n")
        self._send(console, "snapshot", self._changes(console, self._fingerprints(), {}, full=True))
        if self._loop is None:
            self._loop = task.LoopingCall(self.tick)
            self._loop.clock = self.control.reactor
            self._loop.start(TICK, now=False)
        return server.NOT_DONE_YET

    def state(self) -> dict:
        """The listeners, faults, messages and error count (all cheap to read)."""
        control = self.control
        recent = control.base.store.recent
        return {"listeners": [{"id": id, **l.describe()} for id, l in control.named().items()],
                "faults": [spec for spec, _ in control.fault_specs],
                "messages": {"count": len(recent), "latest": recent[-1].name if recent else None},
                "errors": control.errors()}

    def tick(self) -> None:
        """Send each console what changed since its last event."""
        prints, summaries = self._fingerprints(), {}
        now = self.control.reactor.seconds()
        for console in list(self.consoles):
            changes = self._changes(console, prints, summaries)
            if changes:
                self._send(console, "update", changes)
            elif now - console.written >= KEEPALIVE:
                console.request.write(b": keepalive\n\n")
                console.written = now

    def close(self) -> None:
        """End every stream (the API is stopping)."""
        for console in list(self.consoles):
            console.request.finish()
        self._stop()

    # -- internals ---------------------------------------------------------

    def _fingerprints(self) -> tuple[dict, dict]:
        store = self.control.base.transcripts
        sessions = {t.session_id: (t.record_count, t.session_id in store.open, t) for t in store.all()}
        return sessions, self.state()

    def _changes(self, console: _Console, prints: tuple[dict, dict], summaries: dict, full: bool = False) -> dict:
        """What C{console} was not sent yet; C{summaries} keeps the sessions
        summarized in this tick, for the next console."""
        sessions, state = prints
        changed = [t for id, (count, open, t) in sessions.items() if console.sessions.get(id) != (count, open)]
        removed = [id for id in console.sessions if id not in sessions]
        console.sessions = {id: (count, open) for id, (count, open, _) in sessions.items()}
        changes = {}
        missing = [t for t in changed if t.session_id not in summaries]
        if missing:
            summaries.update((row["session"], row) for row in self.control.summaries(missing))
        if changed or full:
            changes["sessions"] = [summaries[t.session_id] for t in changed]
        if removed:
            changes["removed"] = removed
        changes.update({key: value for key, value in state.items() if full or console.state.get(key) != value})
        console.state = state
        if full:
            changes.update(self.extra())
        return changes

    def _send(self, console: _Console, event: str, data: dict) -> None:
        self.sent += 1
        console.request.write(b"id: %d\nevent: %s\ndata: %s\n\n" % (
            self.sent, event.encode("ascii"), json.dumps(data, separators=(",", ":")).encode("utf-8")))
        console.written = self.control.reactor.seconds()

    def _gone(self, console: _Console) -> None:
        if console in self.consoles:
            self.consoles.remove(console)
        if not self.consoles:
            self._stop()

    def _stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
