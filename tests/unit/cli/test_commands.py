"""The emulator command line: --help everywhere, one-line errors, and `emulator serve`."""

import json
import re
import selectors
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request

import pytest

from emulator import cli
from emulator.testing import free_port, wait_for_banner
from hosts import read_lines_until


def run(capsys, *argv):
    try:
        status = cli.main(list(argv))
    except SystemExit as e:
        status = e.code
    out = capsys.readouterr()
    return status, out.out, out.err


def commands(capsys) -> list[str]:
    """The subcommands `emulator --help` lists."""
    status, out, _ = run(capsys, "--help")
    assert status == 0
    section = out.split("\n  COMMAND\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^    ([a-z-]+)", section, re.M)


def test_every_command_has_help(capsys):
    """Each command `emulator --help` lists answers --help with its usage and exit 0."""
    names = commands(capsys)
    assert {"profiles", "show", "check", "transcript", "ca", "serve"} <= set(names)
    for name in names:
        status, out, err = run(capsys, name, "--help")
        assert status == 0, (name, err)
        assert out.startswith(f"usage: emulator {name}"), (name, out[:80])
    status, out, _ = run(capsys, "ca", "export", "--help")
    assert status == 0 and out.startswith("usage: emulator ca export")


def test_serve_help_lists_the_twistd_options(capsys):
    """emulator serve --help names itself and lists the options of twistd emulator, --api included."""
    status, out, _ = run(capsys, "serve", "--help")
    assert status == 0
    assert out.startswith("usage: emulator serve [OPTIONS]")
    for option in ("--profile=", "--listen=", "--listen-tls=", "--api=", "--maildir="):
        assert option in out


@pytest.mark.parametrize("argv, status, message", [
    (["nosuch"], 2, "emulator: argument COMMAND: invalid choice: 'nosuch'"),
    (["show"], 2, "emulator show: the following arguments are required: NAME|PATH"),
    (["show", "nosuch"], 1, "emulator: nosuch:(name): no profile of that name"),
    (["transcript", "/nonexistent/t.jsonl"], 1, "emulator transcript: /nonexistent/t.jsonl: no such file or folder"),
    (["serve", "--bogus"], 2, "emulator serve: option --bogus not recognized"),
    (["serve", "--profile", "nosuch"], 1, "emulator serve: bad profile: nosuch:(name): no profile of that name"),
    (["serve", "--api", "tcp:notaport"], 2, "emulator serve: --api tcp:notaport: port 'notaport': must be a number from 0 to 65535 (see emulator serve --help)"),
])
def test_errors_are_one_line_and_a_non_zero_exit(capsys, argv, status, message):
    """A bad command, argument, file or option is one line on stderr and a non-zero exit, never a traceback."""
    got, out, err = run(capsys, *argv)
    assert got == status
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(message), err





@pytest.mark.e2e
def test_serve_says_where_it_listens_on_port_zero(tmp_path):
    """emulator serve --listen tcp:0 --api tcp:0 prints its progress and one "listening on" line per
    listener on stderr (the API's with the console's address), from which a suite in any language reads the
    ports, then serves SMTP and the API."""
    proc = subprocess.Popen([sys.executable, "-m", "emulator.cli", "serve", "--listen", "tcp:0", "--api", "tcp:0",
                             "--state-dir", str(tmp_path / "state")],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        lines = read_lines_until(proc.stderr, 2, r"^emulator: listening on ", time.monotonic() + 30)
        assert lines[0] == "emulator: profile ims55sp4: Microsoft Exchange Server 5.5 Internet Mail Service 5.5.2653.13"
        smtp_line, api_line = [line for line in lines if line.startswith("emulator: listening on ")]
        smtp = int(re.fullmatch(r"emulator: listening on 127\.0\.0\.1:(\d+) \(tcp:0:interface=127\.0\.0\.1\), "
                                r"profile ims55sp4", smtp_line).group(1))
        url = re.fullmatch(r"emulator: listening on 127\.0\.0\.1:(\d+) \(control API\); "
                           r"console at (http://127\.0\.0\.1:\1/)", api_line).group(2)
        with urllib.request.urlopen(url + "health", timeout=10) as response:
            assert json.loads(response.read())["status"] == "ok"
        with smtplib.SMTP("127.0.0.1", smtp, timeout=10) as client:
            client.sendmail("a@example.org", ["b@example.test"], b"Subject: serve\r\n\r\nhi\r\n")
        with urllib.request.urlopen(url + "messages", timeout=10) as response:
            assert [m["recipients"] for m in json.loads(response.read())] == [["b@example.test"]]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM  # twistd ends by the signal it was stopped with


@pytest.mark.e2e
def test_serve_runs_without_twistds_runner(tmp_path):
    """emulator serve runs its service itself (issue 19: twistd's runner and its scan of every plugin were
    a third of the start-up): up to its first banner it imports neither twistd's runner, nor its
    application machinery, nor any plugin.  Structural, from `python -X importtime`; never timed."""
    port = free_port()
    (tmp_path / "maildir").mkdir()
    with open(tmp_path / "stderr", "wb") as err:  # importtime's lines: a file, never a pipe nobody drains
        proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "emulator.cli", "serve", "--listen",
                                 f"tcp:{port}", "--maildir", str(tmp_path / "maildir"), "--transcripts",
                                 str(tmp_path / "transcripts"), "--state-dir", str(tmp_path / "state")],
                                cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        assert wait_for_banner(port, timeout=30).startswith(b"220 ")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    lines = (tmp_path / "stderr").read_text().splitlines()
    imported = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    assert {"emulator.tap", "twisted.internet.reactor", "twisted.logger"} <= imported  # importtime was on
    assert "emulator: listening on 127.0.0.1:%d (tcp:%d:interface=127.0.0.1), profile ims55sp4" % (port, port) \
        in lines
    # twisted.plugins is imported by a plugin scan alone (twisted.plugin.getPlugins)
    runner = {"twisted.scripts.twistd", "twisted.scripts._twistd_unix", "twisted.application.app",
              "twisted.plugins"} & imported
    assert runner == set()
    assert [name for name in imported if name.startswith("twisted.plugins.")] == []
    # nor what the listeners need not: StreamServerEndpointService's module (ClientService and automat)
    assert {"twisted.application.internet", "automat"} & imported == set()


def test_serve_leaves_the_garbage_collector_as_it_found_it(capsys):
    """emulator serve starts with the garbage collector off (see emulator.cli._run); when it returns
    (here: a usage error) the collector is on again."""
    import gc

    assert gc.isenabled()
    assert run(capsys, "serve", "--bogus")[0] == 2
    assert gc.isenabled()


def emulator(*argv):
    """The real entry point in a subprocess: (status, stdout, stderr)."""
    result = subprocess.run([sys.executable, "-m", "emulator.cli", *argv], capture_output=True, text=True,
                            timeout=120)
    return result.returncode, result.stdout, result.stderr


def test_version_is_the_emulators():
    """`emulator --version` and `emulator serve --version` print the emulator's version (serve printed
    Twisted's), with Twisted's and Python's beside it."""
    import platform

    import emulator as package

    for argv in (["--version"], ["serve", "--version"]):
        status, out, err = emulator(*argv)
        assert (status, err) == (0, "")
        assert out.startswith(f"emulator {package.__version__} (Twisted ") and \
            out.endswith(f", Python {platform.python_version()})\n")


def test_ca_export_names_its_state_folder_and_invents_no_ca(tmp_path):
    """With no CA in the state folder, `ca export` refuses in one line naming the folder (a new CA would not
    verify the server that is running); --create makes one; then it says which folder it read."""
    state = tmp_path / "state"
    status, out, err = emulator("ca", "export", "--state-dir", str(state), str(tmp_path / "ca.pem"))
    assert (status, out) == (1, "")
    assert err == (f"emulator ca export: no test CA in {state} (a server makes one when it first generates a "
                   "certificate; `make run` keeps its own in var/state: give --state-dir, or --create to make "
                   "one now)\n")
    assert not (tmp_path / "ca.pem").exists() and not (state / "ca.pem").exists()
    status, out, err = emulator("ca", "export", "--state-dir", str(state), "--create", str(tmp_path))
    assert (status, out) == (0, f"{tmp_path / 'ca.pem'}\n")
    assert err == f"emulator ca export: created a test CA in {state}\nemulator ca export: the test CA of {state}\n"
    status, out, err = emulator("ca", "export", "--state-dir", str(state), str(tmp_path / "again.pem"))
    assert status == 0 and err == f"emulator ca export: the test CA of {state}\n"
    assert (tmp_path / "again.pem").read_bytes() == (state / "ca.pem").read_bytes()


def test_output_into_a_closed_pipe_is_not_an_error(tmp_path):
    """`emulator transcript BIG | head -1` ends quietly: no "Broken pipe" line, status 0 (the output is far
    larger than a pipe's buffer, so the write after head exits fails)."""
    from emulator.testing import Harness

    h = Harness("ims55sp4")
    h.connect()
    h.send(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n" + b"x" * 70 + b"\r\n")
    for _ in range(20):
        h.send(b"line of text\r\n" * 1000)
    (tmp_path / "big.jsonl").write_text(h.transcript.to_jsonl())
    result = subprocess.run(f"{sys.executable} -m emulator.cli transcript {tmp_path / 'big.jsonl'} | head -1; "
                            "exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.startswith("=== session s1 profile ims55sp4 ")
    assert (result.returncode, result.stderr) == (0, "")
