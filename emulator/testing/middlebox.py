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

from emulator.capture.transcript import Transcript
from emulator.middlebox import Middlebox, load
from emulator.middlebox.relay import Relay
from emulator.testing.harness import Harness, InMemory


class MiddleboxHarness(InMemory):
    """One in-memory connection through a middlebox to an emulated server.

    C{box} is a L{Middlebox}, a type name or a file, or None for the
    profile's own C{middlebox:} section.  The relay's actions are carried
    out by the interpreter the Twisted middlebox edge uses
    (L{emulator.host.interpreter}), with the L{Harness} as the server leg.

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
        return self._collect(self._from_server, self.server.connect())

    def send(self, data: bytes) -> bytes:
        """One segment from the client; return what the client gets back."""
        self._received(data)
        return self._collect(self._run, self.relay.client_data(data))

    def lose(self) -> bytes:
        """The client goes away."""
        return self._collect(self._run, self.relay.client_closed())

    def human(self) -> str:
        return self.transcript.human()

    def _from_server(self, data: bytes) -> None:
        if data:
            self._received_upstream(data)
            self._run(self.relay.server_data(data))
        if self.server.closed and not self.closed:
            self._upstream_ended()
            self._run(self.relay.server_closed())

    # -- the wire (see emulator.host.interpreter) -------------------------

    def _close(self, abort: bool) -> None:
        self.closed = True
        self._ended()

    def _send_upstream(self, data: bytes) -> None:
        self._from_server(self.server.send(data))

    def _close_upstream(self) -> None:
        self.server.lose()
