"""The one interpreter of actions (emulator.host.interpreter): what each action does to the
wire and to the transcript, and that the Twisted edges and the in-memory harnesses, which all
carry out actions through it, record a session alike."""

import io

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from emulator import middlebox
from emulator.capture.transcript import Transcript
from emulator.core.actions import Close, CloseUpstream, Delay, Deliver, Event, Message, Send, SendUpstream, StartTLS
from emulator.host.emulation import Emulation
from emulator.host.interpreter import Interpreter
from emulator.host.protocol import EventLog
from emulator.profiles import loader as profiles
from emulator.testing import Harness, MiddleboxHarness
from hosts import Wire

MESSAGE = Message(b"a@b", (b"c@d", b"e@f"), b"hi\r\n", "192.0.2.1:1", "ims55sp4", b"c", False, None, "s1")





def test_each_action_is_carried_out_and_recorded_in_order():
    """Send is recorded then written; Event recorded; StartTLS recorded as tls_starting then
    started; SendUpstream recorded on the server leg then sent; the closes carried out; a Delay
    takes the actions after it, to carry out later."""
    wire = Wire()
    wire._run([Send(b"220 hi\r\n"), Event("x", {"n": 1}), StartTLS(), SendUpstream(b"HELO\r\n"), CloseUpstream(),
               Close(abort=True), Delay(2.0), Send(b"later\r\n")])
    assert wire.calls == [("write", b"220 hi\r\n"), ("start_tls",), ("upstream", b"HELO\r\n"), ("close_upstream",),
                          ("close", True), ("delay", 2.0, [Send(b"later\r\n")])]
    assert wire.transcript.human() == "<- 220 hi\n=== x n=1\n=== tls_starting\n=> HELO\n"
    assert [r.t for r in wire.transcript.records] == [5, 5, 5, 5]


def test_a_message_is_stored_before_its_reply_and_refused_when_it_cannot_be():
    """Deliver: the store first, then message_accepted (with the name the host gave it) and the
    250; a store that fails gives message_not_stored and the failure reply instead."""
    wire = Wire()
    wire._run([Deliver(MESSAGE, accepted=b"250 OK\r\n", failed=b"451 no\r\n")])
    assert wire.calls == [("store", b"hi\r\n"), ("write", b"250 OK\r\n")]
    assert wire.transcript.human() == "=== message_accepted name=1.M1.host bytes=4 recipients=2\n<- 250 OK\n"
    failing = Wire(fail_storage=True)
    failing._run([Deliver(MESSAGE, accepted=b"250 OK\r\n", failed=b"451 no\r\n")])
    assert failing.calls == [("write", b"451 no\r\n")]
    assert failing.transcript.human() == "=== message_not_stored error=disk full\n<- 451 no\n"


def test_what_a_host_sees_is_recorded_with_the_tls_state():
    """Bytes received, a completed handshake (after which both directions are marked as TLS), the
    server leg's bytes and the ends of both legs."""
    wire = Wire()
    wire._received(b"STARTTLS\r\n")
    wire._secured({"version": "TLSv1.2"})
    wire._received(b"EHLO c\r\n")
    wire._run([Send(b"250 ok\r\n")])
    wire._received_upstream(b"220 up\r\n")
    wire._upstream_ended(reason="gone")
    wire._ended(abort=False)
    assert wire.transcript.human() == ("-> STARTTLS\n=== tls_established version=TLSv1.2\n~> EHLO c\n<~ 250 ok\n"
                                       "<= 220 up\n=== upstream_closed reason=gone\n=== closed abort=False\n")


def test_anything_but_an_action_is_refused():
    """A core that returned something else is a bug, reported rather than skipped."""
    with pytest.raises(TypeError, match="not an action"):
        Wire()._run([b"220 hi\r\n"])


# -- the same session through each host ------------------------------------------------------


# One reply per segment: the in-memory server leg of the Twisted middlebox edge passes each
# write on as it comes, where MiddleboxHarness passes a segment's replies together.
SESSION = [b"EHLO client.example\r\n", b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<b@example.test>\r\n",
           b"DATA\r\n", b"Subject: x\r\n\r\nhello\r\n.\r\n", b"NOOP\r\n", b"QUIT\r\n"]


def without(text: str, *prefixes: str) -> list[str]:
    """The lines of an arrow form, but those starting with one of C{prefixes}."""
    return [line for line in text.splitlines() if not line.startswith(prefixes)]


def twisted_edge(profile, box=None):
    """An emulation's listener factory over a StringTransport and a fake clock."""
    clock = Clock()
    emulation = Emulation(profiles.load(profile), middlebox=middlebox.load(box) if box else None,
                          events=EventLog("json", io.StringIO()))
    proto = emulation.factory("tcp:2525", reactor=clock).buildProtocol(None)
    proto.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.10", 1025)))
    return clock, emulation, proto


def test_the_server_edge_and_the_harness_record_a_session_alike():
    """The same client bytes through the Twisted server edge and through the in-memory Harness
    give the same transcript, but for what only one host knows: the Maildir name of the stored
    message and how the connection ended."""
    clock, emulation, proto = twisted_edge("ims55sp4")
    h = Harness("ims55sp4")
    h.connect()
    for segment in SESSION:
        proto.dataReceived(segment)
        h.send(segment)
    proto.connectionLost(Failure(ConnectionDone()))
    edge = proto.transcript.human().replace(f"name={emulation.store.recent[0].name} ", "")
    assert without(edge, "=== closed") == without(h.human(), "=== closed")
    assert "=== message_accepted bytes=" in edge and edge.endswith("=== closed reason=ConnectionDone: Connection was closed cleanly.\n")


def test_the_middlebox_edge_and_its_harness_record_both_legs_alike():
    """The same client bytes through the Twisted middlebox edge (with the emulated server leg in
    memory) and through the MiddleboxHarness give the same transcript of both legs, but for how
    each learns of the connections (the upstream's session, its close, the client's close)."""
    clock, emulation, proto = twisted_edge("ims55sp4", "pix-mailguard")
    h = MiddleboxHarness("pix-mailguard", "ims55sp4")
    h.connect()
    for segment in [b"EHLO c\r\n", b"HELO c\r\n"] + SESSION[1:]:
        proto.dataReceived(segment)
        h.send(segment)
    clock.advance(0)  # the server's close reaches the middlebox
    proto.connectionLost(Failure(ConnectionDone()))
    ends = ("=== closed", "=== upstream_closed", "=== upstream_connected")
    assert without(proto.transcript.human(), *ends) == without(h.human(), *ends)
    assert "=> XXXX c" in h.human() and h.human().endswith("=== upstream_closed\n=== closed\n")


def test_a_pipelined_group_leaves_in_one_write():
    """RFC 2920: the replies to one segment of pipelined commands are recorded one by one and
    written together, in order; the replies before a message's store leave before it (never held
    behind it), its 250 after it, with what follows; a Delay still splits the writes around it."""
    wire = Wire()
    wire._run([Send(b"250 a\r\n"), Event("x", {}), Send(b"250 b\r\n"),
               Deliver(MESSAGE, accepted=b"250 OK\r\n", failed=b"451 no\r\n"), Send(b"221 bye\r\n"), Close()])
    assert wire.calls == [("write", b"250 a\r\n250 b\r\n"), ("store", b"hi\r\n"),
                          ("write", b"250 OK\r\n221 bye\r\n"), ("close", False)]
    assert wire.transcript.human() == ("<- 250 a\n=== x\n<- 250 b\n=== message_accepted name=1.M1.host bytes=4 "
                                       "recipients=2\n<- 250 OK\n<- 221 bye\n")
    split = Wire()
    split._run([Send(b"250-a\r\n"), Delay(1.0), Send(b"250 b\r\n")])
    assert split.calls == [("write", b"250-a\r\n"), ("delay", 1.0, [Send(b"250 b\r\n")])]


def test_what_was_recorded_is_written_when_an_action_fails():
    """An action that is not one (a core bug, which the edge answers with 451) does not swallow the
    replies recorded before it."""
    wire = Wire()
    with pytest.raises(TypeError):
        wire._run([Deliver(MESSAGE, accepted=b"250 OK\r\n", failed=b"451 no\r\n"), Send(b"250 a\r\n"),
                   Send(b"250 b\r\n"), b"junk"])
    assert wire.calls == [("store", b"hi\r\n"), ("write", b"250 OK\r\n250 a\r\n250 b\r\n")]
