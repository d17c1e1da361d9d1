"""One way to build a server (emulator.host.recipe, emulator.host.emulation.build): option parsing
only checks, building opens the stores and makes certificates, every caller builds from a Recipe,
and the modules that serve import one another one way only."""

import json
import subprocess
import sys

import pytest
from twisted.internet.task import Clock

from emulator import cli
from emulator.control.listeners import Control
from emulator import tap
from emulator.host.emulation import build
from emulator.host.recipe import Recipe, load_profile
from emulator.testing import Harness


def parsed(*argv):
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


def test_parsing_the_options_opens_nothing_and_building_opens_what_they_name(tmp_path):
    """twistd emulator's options are checked and the profile read, but neither the Maildir, the
    transcript folder nor a certificate is made until the emulation is built (by makeService, or
    emulator serve); it is built once."""
    options = parsed("--profile", "ims55sp4-cert", "--maildir", str(tmp_path / "md"),
                     "--transcripts", str(tmp_path / "tr"), "--state-dir", str(tmp_path / "st"))
    assert not any(tmp_path.iterdir())
    emulation = tap.emulation(options)
    assert (tmp_path / "md" / "new").is_dir() and (tmp_path / "tr").is_dir()
    assert list((tmp_path / "st").rglob("*.pem")) and emulation.tls_context is not None
    assert tap.emulation(options) is emulation


def test_a_build_failure_under_twistd_is_one_line(tmp_path):
    """What only building finds (here certificate files that do not exist) stops makeService
    with one line naming the problem instead of a traceback."""
    options = parsed("--tls-cert", str(tmp_path / "nosuch.pem"), "--tls-key", str(tmp_path / "nosuch.key"))
    with pytest.raises(SystemExit) as stopped:
        tap.makeService(options)
    assert str(stopped.value).startswith("twistd emulator: TLS: ") and "nosuch.pem" in str(stopped.value)
    assert "\n" not in str(stopped.value)


def test_a_build_failure_under_emulator_serve_is_one_line_and_exit_2(tmp_path, capsys):
    """emulator serve builds before it starts twistd: the same failure is its one-line usage error."""
    assert cli.main(["serve", "--tls-cert", str(tmp_path / "nosuch.pem"), "--tls-key", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emulator serve: TLS: ") and "nosuch.pem" in err and err.count("\n") == 1


def test_listen_tls_needs_a_certificate_once_built(tmp_path):
    """--listen-tls for a profile that offers implicit TLS but binds no certificate passes the
    option checks and is refused when the emulation is built, naming what would give it one."""
    bare = tmp_path / "bare.yaml"
    bare.write_text("extends: netscape-ms\nname: bare\ntls:\n  certificate: none\n  implicit: true\n")
    options = parsed("--profile", str(bare), "--listen-tls", "tcp:4650", "--state-dir", str(tmp_path))
    with pytest.raises(tap.usage.UsageError, match="--listen-tls needs a certificate: the profile's tls: certificate"):
        tap.emulation(options)


def test_the_recipe_is_what_every_caller_builds_from(tmp_path):
    """A Recipe describes the profile and everything around it; build() gives the emulation
    (accounts added, faults in place, seed kept) and Recipe.server() the in-memory server of the
    same profile, its faults first, as the Harness uses it."""
    from emulator.quirks.spec import parse

    fault = parse("noop:reply=421 go away")
    recipe = Recipe("ims55sp4", accounts=("alice:pw",), hostname="mx.example.test", seed=7, faults=(fault,),
                    state_dir=tmp_path)
    emulation = build(recipe)
    assert (emulation.hostname, emulation.seed, emulation.faults) == ("mx.example.test", 7, [fault])
    assert emulation.profile == load_profile("ims55sp4", ["alice:pw"]) != load_profile("ims55sp4")
    server = recipe.server()
    assert server.profile == emulation.profile
    assert (server.hostname, server.seed, server.faults) == ("mx.example.test", 7, (fault,))
    h = Harness("ims55sp4", server=server)
    h.connect()
    assert h.send(b"NOOP\r\n") == b"421 go away\r\n"


def test_a_switched_profile_shares_the_first_ones_stores(tmp_path):
    """The control API's profile switch builds the new profile from a recipe with the process's
    options (host name, accounts, certificates) into the first emulation's stores and log."""
    first = build(Recipe("ims55sp4", state_dir=tmp_path))
    control = Control(first, hostname="mx.example.test", accounts=["alice:pw"], reactor=Clock())
    second = control.emulation("ex50")
    assert second is control.emulation("ex50") and second.profile.name == "ex50"
    assert (second.store, second.transcripts, second.events) == (first.store, first.transcripts, first.events)
    assert second.hostname == "mx.example.test" and second.state_dir == first.state_dir
    assert second.profile == load_profile("ex50", ["alice:pw"]) != load_profile("ex50")


def test_the_control_api_and_the_twistd_options_import_one_way():
    """The HTTP API imports the listeners, not twistd's options (no loop between them), and the
    in-memory harness imports no Twisted."""
    probe = ("import json, sys\n"
             "import emulator.control.api\n"
             "tap = 'emulator.tap' in sys.modules\n"
             "for name in [m for m in sys.modules if m.startswith(('emulator', 'twisted'))]:\n"
             "    del sys.modules[name]\n"
             "from emulator.testing import Harness\n"
             "Harness('ims55sp4').connect()\n"
             "print(json.dumps([tap, any(m.startswith('twisted') for m in sys.modules)]))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == [False, False]
