"""The pytest plugin, run with pytest's own pytester in fresh pytest sessions."""

import json
import os
import subprocess
import sys

import pytest

EXPLODING = '''
name: exploding
extends: ims55sp4
quirks:
  - type: explode_on_noop
'''
CONFTEST = '''
from emulator.quirks import Quirk, register

@register("explode_on_noop")
class ExplodeOnNoop(Quirk):
    """A quirk with a bug: fails a server-side assertion on NOOP."""

    def before_command(self, conn, verb, arg):
        if verb == "NOOP":
            assert arg == b"expected", "the server did not expect this NOOP"
        return False
'''


def test_importing_the_plugin_is_inert():
    """Importing the plugin (as every pytest run does) imports no reactor, no twisted.mail, nothing of
    the emulator's but the plugin and the inert package that holds it, and changes no environment variable."""
    probe = (
        "import json, os, sys\n"
        "env = dict(os.environ)\n"
        "before = set(sys.modules)\n"
        "import emulator.testing.plugin\n"
        "new = sorted(set(sys.modules) - before)\n"
        "print(json.dumps({'new': new, 'env': dict(os.environ) == env}))\n"
    )
    result = subprocess.run([sys.executable, "-c", "import pytest\n" + probe], capture_output=True, text=True,
                            check=True)
    report = json.loads(result.stdout)
    assert report["env"] is True
    assert "twisted.internet.reactor" not in report["new"]
    assert not [m for m in report["new"] if m.startswith(("twisted", "OpenSSL", "yaml"))], report["new"]
    assert [m for m in report["new"] if m.startswith("emulator")] == ["emulator", "emulator.testing", "emulator.testing.plugin"]


def test_the_plugin_is_registered_through_its_entry_point():
    """The pytest11 entry point names the plugin module, so an installed emulator offers the fixtures."""
    from importlib.metadata import entry_points

    (point,) = [e for e in entry_points(group="pytest11") if e.name == "legacy_smtp"]
    assert point.value == "emulator.testing.plugin"


def test_fixture_serves_a_client_and_exposes_what_happened(pytester):
    """In a fresh session the fixtures work: host, port, CA path, messages and transcripts."""
    pytester.makepyfile('''
        import smtplib, ssl

        def test_send(legacy_smtp):
            server = legacy_smtp.start("ims55sp4-cert", tls=True)
            context = ssl.create_default_context(cafile=server.ca_path)
            with smtplib.SMTP(server.host, server.port) as client:
                client.starttls(context=context)
                client.sendmail("a@example.org", ["b@example.test"], b"Subject: x\\r\\n\\r\\nhi\\r\\n")
            (message,) = server.messages
            assert message.envelope()["tls"] is True
            assert "<~ 250 OK" in server.human()
    ''')
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_state_is_reset_between_tests(pytester):
    """Messages, transcripts and IIS 4.0's per-peer memory (KB Q279214) do not leak into the next test,
    which gets the same server again."""
    pytester.makepyfile('''
        import smtplib, ssl
        import pytest

        PORTS = []

        @pytest.mark.parametrize("run", [1, 2])
        @pytest.mark.legacy_smtp("iis4-smtp-128bit", tls=True)
        def test_first_message_from_a_host_fails(legacy_smtp, run):
            PORTS.append(legacy_smtp.port)
            assert legacy_smtp.messages == [] and legacy_smtp.transcripts == []
            context = ssl.create_default_context(cafile=legacy_smtp.ca_path)
            with smtplib.SMTP(legacy_smtp.host, legacy_smtp.port) as client:
                client.starttls(context=context)
                assert client.mail("a@example.org")[0] == 505  # would be 250 without the reset
            with smtplib.SMTP(legacy_smtp.host, legacy_smtp.port) as client:
                client.starttls(context=context)
                client.sendmail("a@example.org", ["b@example.test"], b"Subject: x\\r\\n\\r\\nhi\\r\\n")
            assert len(legacy_smtp.messages) == 1
            assert len(set(PORTS)) == 1
    ''')
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_a_server_side_error_fails_the_test_that_caused_it(pytester):
    """A failing assertion inside the emulator fails the test whose client triggered it, with the server's
    traceback and the session in the report; the next test is unaffected."""
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", exploding=EXPLODING)
    pytester.makepyfile('''
        import pathlib, smtplib

        PROFILE = str(pathlib.Path(__file__).with_name("exploding.yaml"))

        def test_client_passes_but_server_failed(legacy_smtp):
            legacy_smtp.start(PROFILE)
            with smtplib.SMTP(legacy_smtp.host, legacy_smtp.port) as client:
                client.noop()

        def test_client_fails_too(legacy_smtp):
            legacy_smtp.start(PROFILE)
            with smtplib.SMTP(legacy_smtp.host, legacy_smtp.port) as client:
                assert client.noop()[0] == 250

        def test_next_test_is_clean(legacy_smtp):
            legacy_smtp.start(PROFILE)
            with smtplib.SMTP(legacy_smtp.host, legacy_smtp.port) as client:
                client.docmd("NOOP", "expected")
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*_ test_client_passes_but_server_failed _*",
        "*AssertionError: the server did not expect this NOOP",
        "*direct cause*",
        "E   emulator.testing.pool.ServerSideError: exploding on 127.0.0.1:* (session *): the emulator raised "
        "AssertionError: the server did not expect this NOOP",
        "*Captured legacy-smtp call*",
        "-> noop",
        "=== internal_error",
        "<- 451 Requested action aborted: local error in processing",
        "*_ test_client_fails_too _*",
        "*ServerSideError*",
        "*the test failed too, with AssertionError: assert 451 == 250",
    ])


def test_an_error_during_teardown_is_reported_for_that_test(pytester):
    """A server-side error caused by a fixture's teardown (a client closing) is an error of that test."""
    pytester.makeconftest(CONFTEST + '''
import smtplib, pytest

@pytest.fixture
def client(legacy_smtp):
    legacy_smtp.start("exploding.yaml")
    c = smtplib.SMTP(legacy_smtp.host, legacy_smtp.port)
    yield c
    c.noop()
    c.close()
''')
    pytester.makefile(".yaml", exploding=EXPLODING)
    pytester.makepyfile('''
        def test_uses_client(client):
            assert client.ehlo()[0] == 250
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_uses_client*", "*ServerSideError*"])


def test_one_line_runs_a_client_against_every_persona(pytester):
    """legacy_smtp_profiles() parametrizes a test over every runnable profile, ids being profile names."""
    from emulator.profiles import loader as profiles

    pytester.makepyfile('''
        import socket
        from emulator.testing.plugin import legacy_smtp_profiles

        @legacy_smtp_profiles()
        def test_persona(legacy_smtp):
            with socket.create_connection(legacy_smtp.address) as s:
                assert s.recv(1)  # every persona speaks first (SMTPS ones a TLS alert or nothing)
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    names = profiles.names()
    result.assert_outcomes(passed=len(names))
    result.stdout.fnmatch_lines_random([f"*test_persona[[]{name}[]] PASSED*" for name in names])


def test_marker_is_registered_for_strict_markers(pytester):
    """The legacy_smtp marker is declared, so --strict-markers suites may use it."""
    pytester.makepyfile('''
        import pytest

        @pytest.mark.legacy_smtp
        def test_default_profile(legacy_smtp):
            assert legacy_smtp.profile.name == "ims55sp4"
    ''')
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers").assert_outcomes(passed=1)


def test_a_suite_that_installs_its_own_reactor_is_not_disturbed(pytester):
    """A suite that installs the asyncio reactor at configure time, as pytest-twisted --reactor=asyncio does,
    still can (the plugin installed none), and the fixtures then run on that reactor; asyncio tests run too."""
    pytester.makeconftest('''
        def pytest_configure(config):
            from twisted.internet import asyncioreactor
            asyncioreactor.install()
    ''')
    pytester.makepyfile('''
        import asyncio, smtplib

        def test_asyncio_still_works():
            async def main():
                await asyncio.sleep(0)
                return 42
            assert asyncio.run(main()) == 42

        def test_fixture_on_the_installed_reactor(legacy_smtp):
            from twisted.internet import reactor
            assert type(reactor).__name__ == "AsyncioSelectorReactor"
            legacy_smtp.start("ims55sp4")
            with smtplib.SMTP(legacy_smtp.host, legacy_smtp.port) as client:
                assert client.noop()[0] == 250
    ''')
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_disabling_the_plugin_removes_the_fixtures(pytester):
    """-p no:legacy_smtp turns the plugin off (its registered name)."""
    pytester.makepyfile('''
        def test_needs_it(legacy_smtp):
            pass
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:legacy_smtp")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'legacy_smtp' not found*"])
