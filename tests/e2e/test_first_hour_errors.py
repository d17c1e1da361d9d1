"""What a new user meets when something is wrong at start (issue 17): one line naming the option, the
endpoint or path and the cause, a non-zero exit, no traceback and no usage dump, from `make run`,
`emulator serve` and `twistd -n emulator` alike.  Each runs the real entry point in a subprocess and
compares the whole stderr line."""

import json
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator.testing import TWISTD, free_port, wait_for_banner

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def run(*argv, cwd=None, timeout=60):
    """(status, stdout, stderr) of a command that ends by itself."""
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    return result.returncode, result.stdout, result.stderr


def serve(*options, **kwargs):
    return run(sys.executable, "-m", "emulator.cli", "serve", *options, **kwargs)


def twistd(*options, **kwargs):
    return run(*TWISTD, "-n", "--pidfile=", "emulator", *options, **kwargs)


@pytest.fixture
def busy_port():
    """A loopback port something else listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize("command, prefix", [(serve, "emulator serve"), (twistd, "twistd emulator")])
def test_a_busy_port_is_one_line(command, prefix, busy_port, tmp_path):
    """The port is taken: one line on stderr naming --listen, the endpoint and the cause; exit 1."""
    status, _, err = command("--listen", f"tcp:{busy_port}", "--state-dir", str(tmp_path), cwd=tmp_path)
    assert status == 1
    assert err.splitlines()[-1] == f"{prefix}: --listen tcp:{busy_port}:interface=127.0.0.1: address already in use"
    assert "Traceback" not in err


def test_make_run_on_a_busy_port_is_one_line(busy_port, tmp_path):
    """`make run` (twistd underneath) says it in the same one line."""
    result = subprocess.run(["make", "-s", "-C", str(ROOT), "run", f"LISTEN=tcp:{busy_port}", "API=",
                             f"STATE={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert f"twistd emulator: --listen tcp:{busy_port}:interface=127.0.0.1: address already in use\n" \
        in result.stderr
    assert "Traceback" not in result.stderr


def test_no_listener_serves_on_when_another_cannot_listen(busy_port, tmp_path):
    """With one endpoint free and one taken, the process ends: the free one does not go on serving."""
    free = free_port()
    status, _, err = serve("--listen", f"tcp:{free}", "--listen", f"tcp:{busy_port}", "--state-dir",
                           str(tmp_path), cwd=tmp_path)
    assert status == 1 and err.endswith(f"--listen tcp:{busy_port}:interface=127.0.0.1: address already in use\n")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", free), timeout=2).close()


@pytest.mark.parametrize("endpoint, problem", [
    ("tcp:99999", "port '99999': must be a number from 0 to 65535"),
    ("tcp:abc", "port 'abc': must be a number from 0 to 65535"),
    ("tcp:2525:interfce=127.0.0.1", "unknown option 'interfce' (did you mean interface?); tcp: takes interface, "
                                    "backlog"),
    ("unix:/nonexistent/x.sock", "no such folder /nonexistent"),
    ("ssl:2623", "ssl: endpoints need a certificate of their own; for SMTPS with the persona's certificate use "
                 "--listen-tls tcp:PORT"),
    ("smtp:25", "unknown endpoint type 'smtp'; write PORT, HOST:PORT, tcp:PORT, tcp6:PORT or unix:PATH"),
])
@pytest.mark.parametrize("command, prefix", [(serve, "emulator serve"), (twistd, "twistd emulator")])
def test_a_malformed_endpoint_is_said_in_the_users_words(command, prefix, endpoint, problem):
    """No Python internals (int() literals, keyword arguments of private functions): the option, the
    endpoint as given, what is wrong, and where help is; exit 2, nothing else on stderr."""
    status, out, err = command("--listen", endpoint)
    assert status == 2 and out == ""
    assert err == f"{prefix}: --listen {endpoint}: {problem} (see {prefix} --help)\n"


def test_an_address_not_on_this_host_is_one_line(tmp_path):
    """An interface this machine does not have (TEST-NET-1, RFC 5737) is refused when binding."""
    status, _, err = serve("--listen", "192.0.2.1:2525", "--state-dir", str(tmp_path), cwd=tmp_path)
    assert status == 1
    assert err.splitlines()[-1] == "emulator serve: --listen tcp:2525:interface=192.0.2.1: no such address on this host"


def test_host_port_is_accepted_where_an_endpoint_is_expected(tmp_path):
    """`--listen 127.0.0.1:PORT` works, as `emulator send --to` takes it."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "emulator.cli", "serve", "--listen", f"127.0.0.1:{port}",
                             "--state-dir", str(tmp_path)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for_banner(port).startswith(b"220 ")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert f"listening on 127.0.0.1:{port} (tcp:{port}:interface=127.0.0.1)" in err


@pytest.mark.parametrize("command, prefix, status", [(serve, "emulator serve", 1), (twistd, "twistd emulator", 1)])
def test_an_unknown_profile_is_the_line_alone(command, prefix, status):
    """Under twistd the one-line error used to follow a 49-line usage dump: now it is the line alone, with
    a pointer to --help; exit 1 as for every command's unknown profile."""
    got, out, err = command("--profile", "nosuch")
    assert (got, out) == (status, "")
    assert len(err.splitlines()) == 1
    assert err.startswith(f"{prefix}: bad profile: nosuch:(name): no profile of that name; known: ")
    assert err.endswith(f" (see {prefix} --help)\n")


@pytest.mark.parametrize("command, prefix", [(serve, "emulator serve"), (twistd, "twistd emulator")])
def test_a_bad_seed_names_its_option(command, prefix):
    """--seed abc names the option (it said "Parameter type enforcement failed")."""
    status, out, err = command("--seed", "abc")
    assert (status, out) == (2, "")
    assert err == f"{prefix}: --seed abc: must be a whole number (see {prefix} --help)\n"


@pytest.mark.parametrize("option", ["--maildir", "--transcripts", "--state-dir"])
@pytest.mark.parametrize("command, prefix", [(serve, "emulator serve"), (twistd, "twistd emulator")])
def test_an_unusable_folder_names_its_option_and_path(command, prefix, option, tmp_path):
    """A folder that cannot be made is named with its option and path (it was labelled "TLS:"); the
    state folder is used when a certificate is generated, so that case serves a persona with one."""
    extra = ["--profile", "ims55sp4-cert", "--maildir", str(tmp_path / "m")] if option == "--state-dir" else []
    status, out, err = command(option, "/proc/no-such-folder", *extra, cwd=tmp_path)
    assert status != 0 and "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"{prefix}: {option} /proc/no-such-folder: cannot write there: ")


def test_json_logs_are_one_json_object_per_line_with_numbers_as_numbers(tmp_path):
    """--log-format json: every line on stdout, twistd's own included, is a JSON object; the connection
    line's seconds is a number."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "emulator.cli", "serve", "--listen", f"tcp:{port}",
                             "--log-format", "json", "--state-dir", str(tmp_path)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_for_banner(port)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@example.org", ["b@example.test"], b"Subject: json\r\n\r\nhi\r\n")
        time.sleep(0.5)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) >= 5
    assert any("starting up" in r.get("message", "") for r in records)  # twistd's own, as JSON
    connections = [r for r in records if r.get("event") == "connection" and r.get("messages") == 1]
    assert [type(r["seconds"]) for r in connections] == [float] or [type(r["seconds"]) for r in connections] == [int]
    assert all(isinstance(r["time"], float) and r["level"] == "info" for r in records)
