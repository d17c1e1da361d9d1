"""Faults through their interfaces: profiles, --fault text, Emulation.add_fault
on running listeners (fake clock, no sockets), twistd options and `emulator faults`."""

import re
import textwrap
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from emulator import cli, quirks

from emulator.profiles import loader as profiles
from emulator.host.emulation import Emulation
from emulator.quirks.spec import FaultError, attributes, catalogue, parse, types
from emulator.host.protocol import EventLog
from emulator.quirks.faults import Fault

FAULTS_PAGE = Path(__file__).parents[3] / "docs" / "quirks-and-faults.md"


class _Sink:
    def write(self, text):
        pass

    def flush(self):
        pass


def emulation(profile="ims55sp4", **kwargs):
    return Emulation(profiles.load(profile), events=EventLog("json", stream=_Sink()), **kwargs)


def connect(factory):
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


# -- the --fault syntax ------------------------------------------------------------


def test_text_and_profile_entry_give_the_same_fault():
    """--fault text parses into the quirk the YAML entry builds."""
    text = parse("rcpt:reply=452 4.5.3 Too many recipients:times=2:scope=peer")
    entry = parse({"type": "reply", "attributes": {"command": "rcpt", "reply": "452 4.5.3 Too many recipients",
                                                   "times": 2, "scope": "peer"}})
    assert repr(text) == repr(entry)


def test_colons_bars_and_escapes_in_values():
    """A colon not followed by NAME= stays in the value; \\: and \\| are literal; | splits lines."""
    assert parse("mail:reply=550 5.7.1 Refused: see http://x.test/").reply == "550 5.7.1 Refused: see http://x.test/"
    assert parse("mail:reply=550 a\\:times=3").reply == "550 a:times=3"
    assert parse("mail:reply=550-a|550 b").reply == ["550-a", "550 b"]
    assert parse("mail:reply=550 a\\|b").reply == "550 a|b"
    assert parse("ehlo:split=3,9:pause=0.5").at == [3, 9]
    assert parse("noop:trailing_space=yes").space is True


@pytest.mark.parametrize("spec, message", [
    ("rcpt", "write STEP:TYPE"),
    ("rcpt:explode", "unknown fault type 'explode'"),
    ("rcpt:reply=452 x:times=two", "times: must be an integer, not 'two'"),
    ("rcpt:reply=452 x:colour=red", "unknown attribute 'colour' of reply"),
    ("rcpt:reply=452 x:times", "'times' needs a value"),
    ("rcpt:stall=5", "stall takes no value"),
    ("rcpt:reply=99 x", "does not start with a reply code"),
    ("rcpt:disconnect=explode", "mode: must be reply, close or reset"),
    ("rcpt:reply=452 x:probability=2", "probability: must be from 0 to 1"),
    ("rcpt:reply=452 {recipient}", "field {recipient} is not known at every step"),
    ("helo:tarpit=0", "size: must be 1 or more"),
    ("mail:glue=1", "count: must be 2 or more"),
    ("ehlo:split=lines:pause=-1", "pause: must not be negative"),
    ("ehlo:split=9,3", "at: offsets must be increasing"),
    ("rcpt:reply=452 x:from=0", "from: must be 1 or more"),
    ("ehlo:missing_space=+", "separator: must be an empty string or -"),
])
def test_bad_specs_are_one_line_errors(spec, message):
    """Every mistake is a FaultError of one line that quotes the spec."""
    with pytest.raises(FaultError) as error:
        parse(spec)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert spec in str(error.value)


# -- profiles ------------------------------------------------------------------------


BASE = "name: mini\nextends: ims55sp4\n"  # a shipped profile, with faults added below


def write(tmp_path, extra):
    path = tmp_path / "mini.yaml"
    path.write_text(BASE + textwrap.dedent(extra))
    return path


def test_profile_faults_and_seed_load_and_run(tmp_path):
    """quirks: takes faults with 'from'; seed: seeds the dice of every emulation of the profile."""
    loaded = profiles.load(write(tmp_path, """\
        seed: 99
        quirks:
          - type: reply
            attributes: {command: NOOP, reply: "451 4.3.0 later", from: 2, times: 1}
    """))
    assert loaded.seed == 99 and emulation(loaded.path).seed == 99
    from emulator.testing.harness import Harness

    h = Harness(loaded)
    h.connect()
    assert h.send(b"NOOP\r\nNOOP\r\nNOOP\r\n") == b"250 OK\r\n451 4.3.0 later\r\n250 OK\r\n"


@pytest.mark.parametrize("extra, key, problem", [
    ("seed: true\n", "seed", "must be an integer"),
    ("seed: \"7\"\n", "seed", "must be an integer"),
    ("quirks: [{type: reply, attributes: {command: NOOP, reply: \"250 x\", from: 0}}]\n",
     "quirks[0].attributes.from", "must be 1 or more"),
    ("quirks: [{type: delay, attributes: {command: NOOP, seconds: \"2\"}}]\n",
     "quirks[0].attributes.seconds", "must be a number"),
    ("quirks: [{type: split, attributes: {command: data_end}}]\n",
     "quirks[0].attributes.command", "cannot act on the reply after DATA"),
    ("quirks: [{type: reply, attributes: {command: NOOP, reply: \"250 x\", scope: world}}]\n",
     "quirks[0].attributes.scope", "must be connection or peer"),
])
def test_bad_faults_in_a_profile_name_file_and_key(tmp_path, extra, key, problem):
    """A fault that cannot run stops the profile with file:key: problem."""
    path = write(tmp_path, extra)
    with pytest.raises(profiles.ProfileError) as error:
        profiles.load(path)
    assert error.value.key == key and problem in error.value.problem


# -- Emulation: seeds, and faults on running listeners -----------------------------------


def test_seed_rule():
    """The seed is the one given, else the profile's, else a random one; transcripts record it."""
    assert emulation(seed=5).seed == 5
    chosen = emulation()
    assert isinstance(chosen.seed, int) and 0 <= chosen.seed < 2**32
    factory = chosen.factory("tcp:0", reactor=Clock())
    proto, _ = connect(factory)
    assert factory.server.seed == chosen.seed and proto.transcript.seed == chosen.seed


def test_add_fault_reaches_open_connections_and_clear_removes_it():
    """Emulation.add_fault changes every listener at once, open sessions included; clear_faults undoes it."""
    em = emulation()
    first, second = em.factory("tcp:0", reactor=Clock()), em.factory("tcp:1", reactor=Clock())
    proto, transport = connect(first)
    transport.clear()
    em.add_fault(parse("noop:reply=421 4.3.2 Shutting down"))
    proto.dataReceived(b"NOOP\r\n")
    assert transport.value() == b"421 4.3.2 Shutting down\r\n"
    other, other_transport = connect(second)
    other_transport.clear()
    other.dataReceived(b"NOOP\r\n")
    assert other_transport.value() == b"421 4.3.2 Shutting down\r\n"
    em.clear_faults()
    transport.clear()
    proto.dataReceived(b"NOOP\r\n")
    assert transport.value() == b"250 OK\r\n"
    late = em.factory("tcp:2", reactor=Clock())
    assert late.server.faults == ()


def test_listeners_made_after_add_fault_have_it():
    """A listener created after add_fault starts with the fault."""
    em = emulation()
    em.add_fault(parse("connect:reply=554 go away"))
    _, transport = connect(em.factory("tcp:0", reactor=Clock()))
    assert transport.value() == b"554 go away\r\n"


def test_a_split_reply_leaves_in_separate_reactor_turns():
    """split with pause 0: each part is written in its own reactor turn (the wait starts a turn later)."""
    em = emulation()
    em.add_fault(parse("connect:split=4"))
    clock = Clock()
    proto, transport = connect(em.factory("tcp:0", reactor=clock))
    assert transport.value() == b"220 " and transport.producerState == "paused"
    clock.advance(0)
    assert transport.value().startswith(b"220 mail.example.test") and transport.producerState == "producing"


def test_peer_scope_spans_the_listeners_of_one_emulation():
    """Per-peer counts live in the emulation's shared state: two listeners count together; reset clears."""
    em = emulation()
    em.add_fault(parse("connect:reply=421 4.3.2 busy:times=1:scope=peer"))
    _, first = connect(em.factory("tcp:0", reactor=Clock()))
    _, second = connect(em.factory("tcp:1", reactor=Clock()))
    assert first.value() == b"421 4.3.2 busy\r\n" and second.value().startswith(b"220 ")
    em.reset()
    _, third = connect(em.factory("tcp:2", reactor=Clock()))
    assert third.value() == b"421 4.3.2 busy\r\n"


# -- twistd options ---------------------------------------------------------------------


def test_twistd_fault_and_seed_options(tmp_path):
    """--fault (repeatable) and --seed reach the emulation."""
    from emulator.tap import Options, emulation

    options = Options()
    options.parseOptions(["--fault", "rcpt:reply=452 4.5.3 Too many recipients:times=2", "--fault", "ehlo:split",
                          "--seed", "12", "--state-dir", str(tmp_path)])
    em = emulation(options)
    assert em.seed == 12 and [f.type for f in em.faults] == ["reply", "split"]


def test_twistd_rejects_a_bad_fault_in_one_line(tmp_path):
    """A bad --fault is a usage error naming the spec."""
    from twisted.python import usage

    from emulator.tap import Options

    with pytest.raises(usage.UsageError, match=r"--fault: fault 'rcpt:reply=452 x:times=-1': times: must not be negative"):
        Options().parseOptions(["--fault", "rcpt:reply=452 x:times=-1", "--state-dir", str(tmp_path)])


def test_twistd_refuses_faults_in_proxy_mode(tmp_path):
    """--fault with --upstream is refused: no emulated server would see it."""
    from twisted.python import usage

    from emulator.tap import Options

    with pytest.raises(usage.UsageError, match="proxy mode"):
        Options().parseOptions(["--fault", "rcpt:reply=452 x", "--middlebox", "pix-mailguard",
                                "--upstream", "tcp:127.0.0.1:25", "--state-dir", str(tmp_path)])


# -- `emulator faults` and the docs ------------------------------------------------------


def test_emulator_faults_lists_every_type_and_attribute(capsys):
    """The listing is generated from the classes: every type, every attribute, with its description."""
    assert cli.main(["faults"]) == 0
    out = capsys.readouterr().out
    assert set(types()) == {"reply", "disconnect", "stall", "delay", "split", "tarpit", "glue", "inject",
                            "bare_lf", "missing_space", "trailing_space"}
    for name, cls in types().items():
        assert re.search(rf"^{name}  \(--fault 'STEP:{name}", out, re.M)
        for attribute, _, description in attributes(cls):
            assert description, f"{name}.{attribute} has no @ivar description"
            assert f"    {attribute:<12} {description}" in out
    assert out == catalogue()


def test_every_fault_names_its_source():
    """Each fault type's docstring cites where the behaviour comes from."""
    for name, cls in types().items():
        assert "Source:" in cls.__doc__, name


def test_docs_document_every_fault_type_and_attribute():
    """The Faults section of docs/quirks-and-faults.md has a heading per type listing each attribute."""
    text = FAULTS_PAGE.read_text()
    section = text[text.index("\n## Faults"):]
    section = section[:section.index("\n## ", 1)]
    for name, cls in types().items():
        heading = section.index(f"\n### `{name}`")
        body = section[heading:section.find("\n### ", heading + 1)]
        for attribute, _, _ in attributes(cls):
            assert f"- `{attribute}`" in body, f"{FAULTS_PAGE.name}: {name}.{attribute}"
    for attribute, _, _ in attributes(Fault):
        assert f"- `{attribute}`" in section


def test_fault_attributes_are_typed_for_the_loader():
    """Every fault builds from its defaults plus its required attributes, through quirks.build."""
    required = {"reply": {"reply": "250 ok"}, "inject": {"reply": "250 ok"}}
    for name in types():
        assert quirks.build({"type": name, "attributes": {"command": "NOOP", **required.get(name, {})}}).type == name


# -- misspelt steps (issue 17) -----------------------------------------------------------

KNOWN_STEPS = ("known steps: connect, data_end, ., *, HELO, EHLO, MAIL, RCPT, DATA, BDAT, RSET, NOOP, QUIT, STARTTLS, "
               "VRFY, EXPN, HELP, ETRN, TURN, ATRN, XEXCH50, X-LINK2STATE, AUTH, XAUTH, X-EXPS")


@pytest.mark.parametrize("spec, step, guess", [
    ("rpct:reply=452 x", "rpct", "RCPT"),
    ("RCTP:reply=452 x:times=2", "RCTP", "RCPT"),
    ("conect:delay=2", "conect", "connect"),
    ("dataend:reply=451 later", "dataend", "data_end"),
    ("startls:stall", "startls", "STARTTLS"),
])
def test_a_misspelt_step_is_refused_with_a_did_you_mean(spec, step, guess):
    """--fault 'rpct:...' never fired before; now it is refused, naming the known steps and the likely one."""
    with pytest.raises(FaultError) as error:
        parse(spec)
    assert str(error.value) == f"fault {spec!r}: command: unknown step {step!r}; did you mean {guess}? {KNOWN_STEPS}"


@pytest.mark.parametrize("verb", ["XYZZY", "X-EXPS", "xusr"])
def test_a_verb_the_emulator_does_not_know_may_still_be_answered(verb):
    """A product's own command, far from every known step, is no misspelling: a fault may answer it."""
    assert parse(f"{verb}:reply=250 fine").command == verb.upper()


@pytest.mark.parametrize("entry", [
    "{type: reply, attributes: {command: RCTP, reply: \"452 x\"}}",
    "{type: reply_override, attributes: {command: RCTP, reply: \"452 x\"}}",
])
def test_a_misspelt_step_in_a_profile_stops_it(tmp_path, entry):
    """YAML command: RCTP (a fault or the older reply_override) is refused at load with file:key: problem."""
    path = write(tmp_path, f"quirks: [{entry}]\n")
    with pytest.raises(profiles.ProfileError) as error:
        profiles.load(path)
    assert str(error.value) == (f"{path}:quirks[0].attributes.command: unknown step 'RCTP'; did you mean RCPT? "
                                f"{KNOWN_STEPS}")


def test_emulator_check_reports_a_misspelt_step(tmp_path):
    """`emulator check` (the real entry point) says the one line and exits 1, where it said ok before."""
    import subprocess
    import sys

    path = write(tmp_path, "quirks: [{type: reply, attributes: {command: RCTP, reply: \"452 x\"}}]\n")
    result = subprocess.run([sys.executable, "-m", "emulator.cli", "check", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == (f"{path}:quirks[0].attributes.command: unknown step 'RCTP'; did you mean RCPT? "
                             f"{KNOWN_STEPS}\n")


def test_twistd_refuses_a_misspelt_step(tmp_path):
    """twistd emulator --fault 'rpct:...' is a usage error of one line."""
    from twisted.python import usage

    from emulator.tap import Options

    with pytest.raises(usage.UsageError) as error:
        Options().parseOptions(["--fault", "rpct:reply=452 x", "--state-dir", str(tmp_path)])
    assert str(error.value) == f"--fault: fault 'rpct:reply=452 x': command: unknown step 'rpct'; did you mean RCPT? {KNOWN_STEPS}"
