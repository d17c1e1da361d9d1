"""The middlebox's Twisted edge in memory (StringTransport, fake clock), its
twistd options, and the transcript of both legs on disk."""

import io

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import usage

from emulator import cli, middlebox

from emulator.profiles import loader as profiles
from emulator.host.emulation import Emulation
from emulator.capture.maildir import MessageStore
from emulator.host.protocol import EventLog
from emulator import tap
from emulator.tap import Options
from emulator.capture.transcript import Transcript, TranscriptStore, read_sessions


def connect(tmp_path, profile="ims55sp4", box="pix-mailguard"):
    clock = Clock()
    emulation = Emulation(profiles.load(profile), state_dir=tmp_path / "state", middlebox=middlebox.load(box),
                          store=MessageStore(tmp_path / "maildir"),
                          transcripts=TranscriptStore(tmp_path / "transcripts"), events=EventLog("json", io.StringIO()))
    factory = emulation.factory("tcp:2525", reactor=clock)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return clock, emulation, proto, transport


def test_listener_of_an_emulation_with_a_middlebox_serves_it(tmp_path):
    """The client gets the masked banner at once: the in-memory server leg
    greets inside connectionMade, no socket and no reactor turn needed."""
    clock, emulation, proto, transport = connect(tmp_path)
    assert transport.value().startswith(b"220 ****") and b"mail.example.test" not in transport.value()
    assert emulation.served == "pix-mailguard in front of ims55sp4"
    (server,) = [t for t in emulation.transcripts.all() if not t.middlebox]
    assert proto.transcript.upstream == server.session_id and server.peer == proto.transcript.peer


def test_a_session_stores_the_message_and_writes_both_transcripts(tmp_path):
    """A HELO session through the PIX delivers into the Maildir; on close the
    middlebox transcript (both legs) and the server's own are on disk (in the
    run's file), linked."""
    clock, emulation, proto, transport = connect(tmp_path)
    proto.dataReceived(b"EHLO c\r\n")
    proto.dataReceived(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    proto.dataReceived(b"hi\r\n.\r\nQUIT\r\n")
    assert transport.value().endswith(b"250 OK\r\n221 closing connection\r\n")
    assert not transport.disconnecting
    clock.advance(0)  # the server's close reaches the middlebox on the next turn
    assert transport.disconnecting
    proto.connectionLost(None)
    (stored,) = (tmp_path / "maildir" / "new").iterdir()
    assert stored.read_bytes() == b"hi\r\n"
    files = {t.session_id: t for p in (tmp_path / "transcripts").glob("*.jsonl")
             for t in read_sessions(p.read_text())[0]}
    (mb,) = [t for t in files.values() if t.middlebox]
    assert mb.middlebox == "pix-mailguard" and mb.upstream in files
    assert [r.data for r in mb.records if r.leg and r.dir == "c"][0] == b"XXXX c\r\n"
    assert "=> XXXX c" in mb.human() and "<- 500 Unrecognized command" in mb.human()
    assert files[mb.upstream].client_bytes().startswith(b"XXXX c\r\nHELO c\r\n")


def test_client_going_away_closes_the_server_leg(tmp_path):
    """When the client disconnects mid-message the server sees the connection
    end too: its transcript records the aborted message."""
    clock, emulation, proto, transport = connect(tmp_path)
    proto.dataReceived(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npartial")
    proto.connectionLost(None)
    server = next(t for t in emulation.transcripts.all() if not t.middlebox)
    assert server.events("message_aborted") and server.events("closed")
    assert list((tmp_path / "maildir" / "new").iterdir()) == []


def test_server_idle_timeout_reaches_the_client(tmp_path):
    """The emulated server's idle timer runs on the injected clock; when it
    closes, the middlebox closes the client's connection."""
    clock, emulation, proto, transport = connect(tmp_path)
    clock.advance(601)  # exchange55's idle_timeout is 600 s
    clock.advance(0)
    assert transport.disconnecting
    assert proto.transcript.events("upstream_closed")


def test_emulation_refuses_a_middlebox_in_front_of_implicit_tls(tmp_path):
    """A middlebox inspects plaintext; implicit TLS with one is an error."""
    emulation = Emulation(profiles.load("netscape-ms"), state_dir=tmp_path / "state",
                          middlebox=middlebox.load("pix-mailguard"))
    with pytest.raises(ValueError, match="implicit TLS"):
        emulation.factory("tcp:4650", implicit_tls=True, reactor=Clock())


def test_emulation_needs_a_middlebox_for_an_upstream(tmp_path):
    """Proxy mode without a middlebox would emulate nothing."""
    with pytest.raises(ValueError, match="needs a middlebox"):
        Emulation(profiles.load("ims55sp4"), state_dir=tmp_path, upstream="tcp:127.0.0.1:25")


# -- twistd options ------------------------------------------------------------


def parse(*argv):
    options = Options()
    options.parseOptions(list(argv))
    return options


def built(*argv):
    """The emulation the options build (as twistd's makeService and emulator serve build it)."""
    return tap.emulation(parse(*argv))


def test_middlebox_option_loads_a_type_or_a_file(tmp_path):
    """--middlebox NAME and --middlebox FILE reach the emulation."""
    assert built("--middlebox", "pix-mailguard").middlebox == middlebox.load("pix-mailguard")
    path = tmp_path / "fixed.yaml"
    path.write_text("type: pix-mailguard\nattributes: {dotcrlf_bug: false}\n")
    assert built("--middlebox", str(path)).middlebox.dotcrlf_bug is False


def test_profile_section_is_used_without_the_option():
    """A composition profile brings its own middlebox."""
    assert built("--profile", "ims55sp4-pix").middlebox.type == "pix-mailguard"
    assert built("--profile", "ims55sp4").middlebox is None


def test_upstream_option_sets_proxy_mode():
    """--middlebox with --upstream serves the firewall in front of a real server."""
    served = built("--middlebox", "starttls-intercept", "--upstream", "tcp:127.0.0.1:25").served
    assert served == "starttls-intercept in front of tcp:127.0.0.1:25"


@pytest.mark.parametrize("argv, message", [
    (["--upstream", "tcp:127.0.0.1:25"], "--upstream needs --middlebox"),
    (["--middlebox", "sidewinder"], "bad middlebox: sidewinder:(name): no middlebox type of that name"),
    (["--middlebox", "pix-mailguard", "--upstream", "tcp:host"], "--upstream tcp:host:"),
    (["--profile", "netscape-ms", "--listen-tls", "tcp:4650", "--middlebox", "pix-mailguard"], "cannot front implicit TLS"),
])
def test_bad_middlebox_options_are_usage_errors(argv, message):
    """Every wrong combination stops before anything listens."""
    with pytest.raises(usage.UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(*argv)


def test_transcript_command_names_middlebox_and_upstream(tmp_path, capsys):
    """emulator transcript prints the header with the middlebox and both legs' arrows."""
    t = Transcript("m1", "ims55sp4", "192.0.2.10:1025", middlebox="pix-mailguard", upstream="s1")
    t.server_leg(0, "s", b"220 mail.example.test ready\r\n")
    t.sent(0, b"220 ****.*******.**** *****\r\n")
    t.received(0, b"EHLO c\r\n")
    t.server_leg(0, "c", b"XXXX c\r\n")
    path = tmp_path / "m1.jsonl"
    path.write_text(t.to_jsonl())
    assert cli.main(["transcript", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "=== session m1 profile ims55sp4 peer 192.0.2.10:1025 middlebox pix-mailguard upstream s1",
        "<= 220 mail.example.test ready", "<- 220 ****.*******.**** *****", "-> EHLO c", "=> XXXX c"]


def test_help_and_docs_document_the_middlebox_options_and_types():
    """twistd emulator --help lists --middlebox and --upstream, docs/middleboxes.md
    has a heading for every registered middlebox type, and the README a row for
    every shipped composition profile."""
    from pathlib import Path

    text = str(Options())
    assert "--middlebox=" in text and "--upstream=" in text
    root = Path(__file__).parents[3]
    page = (root / "docs" / "middleboxes.md").read_text()
    readme = (root / "README.md").read_text()
    for name in middlebox.types_():
        assert f"\n## `{name}`\n" in page
    for name in profiles.names():
        if profiles.load(name).middlebox is not None:
            assert f"| `{name}` |" in readme
