"""Limits from the profile, with RFC 5321 defaults: what a slow, noisy or greedy client gets."""

from dataclasses import replace

import pytest
from hypothesis import given, strategies as st

from emulator.profiles import loader as profiles
from emulator.testing.harness import Harness
from emulator.core.connection import _has_long_line

from emulator.host.protocol import EventLog
from hosts import Reactor, _Sink

IMS = profiles.load("ims55sp4")


def harness(**limits):
    h = Harness(replace(IMS, limits=replace(IMS.limits, **limits)))
    h.connect()
    return h


def test_defaults_follow_rfc_5321():
    """512-byte command lines, 1000-byte text lines, 5 minutes idle, 3 minutes per data block."""
    limits = profiles.Limits()
    assert (limits.command_line, limits.text_line, limits.idle_timeout, limits.data_timeout) == (512, 1000, 300, 180)
    assert limits.recipients == 100 and limits.bad_commands == 20


def test_text_line_over_1000_bytes_refuses_the_message():
    """A message line of 999 bytes plus CRLF is too long (RFC 5321 4.5.3.1.6); 998 is fine."""
    h = harness()
    h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    assert h.send(b"x" * 998 + b"\r\n.\r\n") == b"250 OK\r\n"
    h.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    assert h.send(b"x" * 999 + b"\r\n.\r\n") == b"500 Line too long\r\n"
    assert len(h.messages) == 1
    assert h.transcript.events("message_rejected")[0].fields == {"reason": "text_line", "bytes": 1001}


@given(st.lists(st.integers(0, 40), max_size=30), st.integers(1, 45), st.sampled_from([b"\n", b"\r\n"]))
def test_long_line_check_agrees_with_the_definition(lengths, limit, end):
    """The windowed search says a line is too long exactly when splitting the
    body at every LF would find a piece of at least C{limit} bytes."""
    body = end.join(b"x" * n for n in lengths)
    naive = len(body) >= limit and max(map(len, body.split(b"\n"))) >= limit
    assert _has_long_line(body, limit) == naive


def test_text_line_limit_zero_accepts_any_line():
    """text_line: 0 turns the check off."""
    h = harness(text_line=0)
    h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    assert h.send(b"x" * 5000 + b"\r\n.\r\n") == b"250 OK\r\n"


def test_bad_commands_before_disconnect():
    """After the limit of unknown or malformed commands: 421 and close."""
    h = harness(bad_commands=3)
    assert h.send(b"FOO\r\nBAR\r\n") == b"500 Unrecognized command\r\n" * 2
    assert h.send(b"HELO\r\n") == (b"501 Syntax error in parameters or arguments\r\n"
                                   b"421 mail.example.test Too many errors, closing connection\r\n")
    assert h.closed == "close"
    assert h.send(b"NOOP\r\n") == b""


def test_over_long_lines_count_as_bad_commands():
    """Over-long lines count toward the error limit too."""
    h = harness(bad_commands=2)
    h.send(b"x" * 600 + b"\r\n")
    assert h.send(b"y" * 600 + b"\r\n").endswith(b"Too many errors, closing connection\r\n")


def test_commands_per_session():
    """The command after the limit gets 421 and the connection closes."""
    h = harness(commands=3)
    assert h.send(b"NOOP\r\nNOOP\r\nNOOP\r\n") == b"250 OK\r\n" * 3
    assert h.send(b"NOOP\r\n") == b"421 mail.example.test Too many commands, closing connection\r\n"
    assert h.closed == "close"


@pytest.mark.parametrize("smuggle", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"])
def test_smtp_smuggling_sequences_do_not_end_data(smuggle):
    """Only <CRLF>.<CRLF> ends DATA by default: the SMTP smuggling sequences are message content."""
    h = harness()
    h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    out = h.send(b"Subject: 1\r\n\r\nx" + smuggle + b"MAIL FROM:<evil@x>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    assert out == b""
    assert h.send(b"\r\n.\r\n") == b"250 OK\r\n"
    (message,) = h.messages
    assert b"MAIL FROM:<evil@x>" in message.data


def adapter(profile):
    from twisted.internet.testing import StringTransport

    from emulator.host.protocol import EmulatorFactory
    from emulator.core.connection import Server

    reactor = Reactor()
    factory = EmulatorFactory(Server(profile), reactor=reactor, events=EventLog("json", stream=_Sink()))

    def connect():
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    return reactor, factory, connect


def test_connections_over_the_limit_get_421_and_close():
    """One connection more than the limit is refused with 421; a slot frees when one closes."""
    reactor, factory, connect = adapter(replace(IMS, limits=replace(IMS.limits, connections=2)))
    (p1, t1), (p2, t2), (p3, t3) = connect(), connect(), connect()
    assert t3.value() == b"421 mail.example.test Too many connections, try again later\r\n"
    assert t3.disconnecting and not t1.disconnecting
    p3.connectionLost(None)
    p1.connectionLost(None)
    p4, t4 = connect()
    assert t4.value().startswith(b"220 ")
    assert p3.transcript.events("limit")[0].fields == {"name": "connections", "value": 2}


def test_data_phase_has_its_own_timeout():
    """A client silent in the middle of a message is cut off after data_timeout, not idle_timeout."""
    reactor, factory, connect = adapter(replace(IMS, limits=replace(IMS.limits, idle_timeout=600, data_timeout=60)))
    proto, transport = connect()
    proto.dataReceived(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npart")
    reactor.advance(59)
    assert not transport.disconnecting
    reactor.advance(2)
    assert transport.disconnecting
    assert proto.transcript.events("idle_timeout")


def test_half_open_connection_hits_the_idle_timeout():
    """A client that connects and never speaks is closed after idle_timeout (fake clock)."""
    reactor, factory, connect = adapter(IMS)
    proto, transport = connect()
    reactor.advance(IMS.limits.idle_timeout - 1)
    assert not transport.disconnecting
    reactor.advance(2)
    assert transport.disconnecting


# -- the core's decisions, in memory: the connection limit and the timeouts --------------------------


def core(profile=IMS, *, implicit_tls=False, **limits):
    """A sans-IO connection of C{profile} with C{limits} replaced."""
    from emulator.core.connection import Server, ServerConnection

    return ServerConnection(Server(replace(profile, limits=replace(profile.limits, **limits))), implicit_tls=implicit_tls)


def test_the_core_admits_up_to_the_connection_limit_and_turns_the_next_away():
    """admit() decides with the count the host keeps: up to the limit nothing happens (the host
    goes on to connect()); past it the limit event, the 421 the product gave, and a clean close."""
    from emulator.core.actions import Close, Event, Send
    from emulator.core.session import Phase

    assert core(connections=2).admit(2) == []
    assert core(connections=0).admit(10_000) == []  # 0: no limit
    conn = core(connections=2)
    assert conn.admit(3) == [Event("limit", {"name": "connections", "value": 2}),
                             Send(b"421 mail.example.test Too many connections, try again later\r\n"), Close()]
    assert conn.phase is Phase.CLOSED


def test_the_core_chooses_the_timeout_of_the_phase():
    """time_left() answers from the phase: between commands the idle timeout, in message content
    the data timeout, during a STARTTLS handshake the profile's handshake timeout; 0 once it has
    come, None where a phase has none."""
    conn = core(idle_timeout=600, data_timeout=60)
    conn.connect()
    assert (conn.time_left(0), conn.time_left(599.5), conn.time_left(600), conn.time_left(900)) == (600, 0.5, 0, 0)
    conn.receive(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npart")
    assert conn.time_left(10) == 50
    conn.receive(b"ial\r\n.\r\n")
    assert conn.time_left(10) == 590
    assert core(idle_timeout=0).time_left(10_000) is None


def test_the_core_times_a_starttls_handshake_and_gives_it_up_with_a_reset():
    """After STARTTLS the handshake has its own timeout (tls: handshake_timeout, 30 s); when it
    comes, the core records why and aborts; a completed handshake goes back to the idle timeout."""
    from emulator.core.actions import Close, Event
    from emulator.core.connection import Server, ServerConnection

    cert = profiles.load("ims55sp4-cert")
    conn = ServerConnection(Server(cert, tls_available=True))
    conn.connect()
    conn.receive(b"EHLO c\r\nSTARTTLS\r\n")
    assert conn.handshaking and conn.time_left(29) == 1
    assert conn.timed_out() == [Event("tls_failed", {"reason": "handshake timeout"}), Close(abort=True)]
    assert not conn.handshaking
    done = ServerConnection(Server(cert, tls_available=True))
    done.connect()
    done.receive(b"EHLO c\r\nSTARTTLS\r\n")
    done.tls_established({"version": "TLSv1.2"})
    assert not done.handshaking and done.time_left(29) == cert.limits.idle_timeout - 29


def test_implicit_tls_begins_with_a_handshake_that_the_core_times():
    """With implicit TLS (SMTPS) the connection starts handshaking: the greeting is preceded by
    the tls_starting event, and the handshake timeout applies until tls_established."""
    from emulator.core.actions import Event

    conn = core(profiles.load("netscape-ms"), implicit_tls=True)
    actions = conn.connect()
    assert actions[0] == Event("tls_starting", {"implicit": True})
    assert conn.handshaking and conn.time_left(0) == conn.server.tls.handshake_timeout
    conn.tls_established({})
    assert not conn.handshaking


def test_an_idle_timeout_is_recorded_answered_as_the_product_did_and_closes():
    """The idle timeout: the event, then the product's timeout reply when its catalogue has one
    (IMS has none: it closes silently), then a clean close."""
    from emulator.core.actions import Close, Event, Send
    from emulator.core.connection import Server, ServerConnection

    assert core().timed_out() == [Event("idle_timeout"), Close()]
    texts = replace(IMS, replies={**IMS.replies, "timeout": IMS.replies["too_many_errors"]})
    conn = ServerConnection(Server(texts))
    conn.connect()
    assert conn.timed_out() == [Event("idle_timeout"), Send(conn.rendered("too_many_errors")), Close()]


def test_the_shortest_timeout_is_how_often_a_host_looks():
    """Server.shortest_timeout: the smallest of the idle, data and TLS handshake timeouts that
    are set (0 is none)."""
    from emulator.core.connection import Server

    def shortest(**limits):
        return Server(replace(IMS, limits=replace(IMS.limits, **limits))).shortest_timeout

    assert Server(IMS).tls.handshake_timeout == 30
    assert shortest(idle_timeout=600, data_timeout=20) == 20
    assert shortest(idle_timeout=600, data_timeout=0) == 30
    assert shortest(idle_timeout=0, data_timeout=0) == 30


@pytest.mark.parametrize("section, key", [("limits", "idle_timeout"), ("limits", "data_timeout"),
                                          ("tls", "handshake_timeout")])
def test_a_timeout_of_zero_is_refused(tmp_path, section, key):
    """The docs say the timeouts cannot be 0 (only the count limits take 0 for "no limit"): 0 is refused at load."""
    path = tmp_path / "t.yaml"
    path.write_text(f"name: t\nextends: ims55sp4\n{section}: {{{key}: 0}}\n")
    with pytest.raises(profiles.ProfileError) as error:
        profiles.load(path)
    assert str(error.value) == f"{path}:{section}.{key}: must be a number of seconds above 0 (a timeout cannot be off)"


def test_a_count_limit_of_zero_still_means_no_limit(tmp_path):
    """Only the timeouts lost their 0: recipients: 0 loads as before."""
    path = tmp_path / "t.yaml"
    path.write_text("name: t\nextends: ims55sp4\nlimits: {recipients: 0, idle_timeout: 0.5}\n")
    limits = profiles.load(path).limits
    assert (limits.recipients, limits.idle_timeout) == (0, 0.5)
