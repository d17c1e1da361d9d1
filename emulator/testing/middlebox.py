"""
A client, a middlebox and an emulated server, all in memory and sans-IO:
each C{send} is one segment from the client, and the transcript records
both legs as the Twisted edge does::

    h = MiddleboxHarness("pix-mailguard", "ims55sp4")
    h.connect()                              # the masked banner
    assert h.send(b"EHLO c\\r\\n") == b"500 Unrecognized command\\r\\n"
    print(h.human())                         # -> EHLO c / => XXXX c / <= 500 ... / <- 500 ...
"""

from __future__ import annotations

from emulator.core.actions import Event
from emulator.middlebox import Middlebox, load
from emulator.middlebox.relay import CloseClient, CloseServer, Relay, ToClient, ToServer
from emulator.testing.harness import Harness
from emulator.capture.transcript import Transcript


class MiddleboxHarness:
    """One in-memory connection through a middlebox to an emulated server.

    C{box} is a L{Middlebox}, a type name or a file, or None for the
    profile's own C{middlebox:} section.

    @ivar server: the L{Harness} of the server leg (its own transcript and
        the messages it accepted).
    @ivar closed: the middlebox closed the client's connection.
    """

    def __init__(self, box, profile, *, peer=("192.0.2.10", 1025), session_id: str = "m1", **server_options):
        self.server = Harness(profile, peer=peer, session_id="s1", **server_options)
        if box is None:
            box = self.server.server.profile.middlebox
            if box is None:
                raise ValueError(f"profile {self.server.server.profile.name} has no middlebox: section")
        self.box: Middlebox = box if isinstance(box, Middlebox) else load(box)
        self.relay = Relay(self.box)
        self.transcript = Transcript(session_id, self.server.server.profile.name, f"{peer[0]}:{peer[1]}",
                                     middlebox=self.box.type, upstream="s1")
        self.closed = False

    @property
    def messages(self):
        return self.server.messages

    def connect(self) -> bytes:
        """Open both legs; return what the client gets of the greeting."""
        return self._from_server(self.server.connect())

    def send(self, data: bytes) -> bytes:
        """One segment from the client; return what the client gets back."""
        self.transcript.received(0, data)
        return self._run(self.relay.client_data(data))

    def lose(self) -> bytes:
        """The client goes away."""
        return self._run(self.relay.client_closed())

    def human(self) -> str:
        return self.transcript.human()

    def _from_server(self, data: bytes) -> bytes:
        out = b""
        if data:
            self.transcript.server_leg(0, "s", data)
            out = self._run(self.relay.server_data(data))
        if self.server.closed and not self.closed:
            self.transcript.event(0, "upstream_closed")
            out += self._run(self.relay.server_closed())
        return out

    def _run(self, actions) -> bytes:
        out = []
        for action in actions:
            kind = type(action)
            if kind is ToClient:
                self.transcript.sent(0, action.data)
                out.append(action.data)
            elif kind is ToServer:
                self.transcript.server_leg(0, "c", action.data)
                out.append(self._from_server(self.server.send(action.data)))
            elif kind is Event:
                self.transcript.event(0, action.name, **action.fields)
            elif kind is CloseClient:
                self.closed = True
                self.transcript.event(0, "closed")
            elif kind is CloseServer:
                self.server.lose()
        return b"".join(out)
