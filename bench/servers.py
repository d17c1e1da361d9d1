"""The SMTP servers under test, and how to start, watch and stop one.

Every server is a ServerSpec; the emulator is one more spec beside the
references.  running() starts a spec fresh as a subprocess on 127.0.0.1 and
yields once its 220 banner has been read.
"""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from emulator.testing.harness import free_port

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Seconds a server may take from spawn to its 220 banner before we give up.
START_TIMEOUT = 30.0

# `python -m twisted.scripts.twistd` is a silent no-op (that module has no
# __main__ block and exits 0), so twistd is entered through its run().
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.exit(run())"


@dataclass(frozen=True)
class ServerSpec:
    """How to start one SMTP server under test."""

    name: str  # key for --only and in the JSON
    title: str  # table column heading
    argv: Callable[[int, Path], list]  # (port, scratch dir) -> command line
    announces_port: bool  # started with port 0, prints "PORT <n>" when listening
    tls_args: Optional[Callable[[Path, Path], list]]  # (cert, key) -> extra args
    root: Path = REPO_ROOT  # the checkout it runs from (--compare runs another one)


def reference_argv(script, stores=False):
    """A reference script; with stores, each message goes to a Maildir in
    the run's scratch folder before the 250 (the emulator's work)."""
    def argv(port, scratch):
        maildir = ["--maildir", str(scratch / "maildir")] if stores else []
        return [sys.executable, str(BENCH_DIR / script), "--port", str(port), *maildir]

    return argv


def cert_args(cert, key):
    return ["--tls-cert", str(cert), "--tls-key", str(key)]


def emulator_options(port, scratch):
    """The emulator's options in every run; transcripts and mail go to scratch."""
    transcripts, maildir = scratch / "transcripts", scratch / "maildir"
    transcripts.mkdir()
    maildir.mkdir()
    return ["--profile", "ims55sp4", "--listen", f"tcp:{port}:interface={HOST}",
            "--transcripts", str(transcripts), "--maildir", str(maildir)]


def emulator_argv(port, scratch):
    """The emulator as a twistd plugin."""
    return [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "emulator", *emulator_options(port, scratch)]


def emulator_serve_argv(port, scratch):
    """The emulator under `emulator serve` (no twistd; bench/startup.py)."""
    return [sys.executable, "-m", "emulator.cli", "serve", *emulator_options(port, scratch)]


def smtp_sink_argv(port, scratch):
    # smtp-sink refuses to run as root unless told which user to drop to.
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    return [shutil.which("smtp-sink"), *user, "-c", f"{HOST}:{port}", "1000"]


EMULATOR = ServerSpec("emulator", "emulator", emulator_argv, False, cert_args)
# Not one of SERVERS (bench/run.py measures twistd's); bench/startup.py starts it.
EMULATOR_SERVE = ServerSpec("emulator-serve", "emulator serve", emulator_serve_argv, False, cert_args)
# The equal-work references come first: they store every message in a
# Maildir before confirming it, as the emulator does (issue 19's yardstick).
# The discarding ones and smtp-sink show what the storing costs.
SERVERS = (
    EMULATOR,
    ServerSpec("twisted-maildir", "Twisted + Maildir", reference_argv("ref_twisted.py", True), True, cert_args),
    ServerSpec("aiosmtpd-mailbox", "aiosmtpd + Mailbox", reference_argv("ref_aiosmtpd.py", True), True,
               cert_args),
    ServerSpec("twisted", "Twisted ESMTP", reference_argv("ref_twisted.py"), True, cert_args),
    ServerSpec("aiosmtpd", "aiosmtpd", reference_argv("ref_aiosmtpd.py"), True, cert_args),
    ServerSpec("smtp-sink", "smtp-sink", smtp_sink_argv, False, None),
)
SERVER_NAMES = tuple(spec.name for spec in SERVERS)
EQUAL_WORK = ("twisted-maildir", "aiosmtpd-mailbox")


COMPARED = "emulator-base"


def emulator_from(root):
    """The emulator of another checkout (for before/after in one run)."""
    root = Path(root).resolve()
    return ServerSpec(COMPARED, f"emulator at {root.name}", emulator_argv, False, cert_args, root)


def emulator_serve_from(root):
    """`emulator serve` of another checkout (bench/startup.py --compare)."""
    root = Path(root).resolve()
    return ServerSpec(COMPARED + "-serve", f"emulator serve at {root.name}", emulator_serve_argv, False, cert_args,
                      root)


class ServerStartError(Exception):
    """The server exited or never sent its banner."""


@dataclass(frozen=True)
class Server:
    pid: int
    port: int
    startup_s: float  # spawn -> 220 banner read


def server_env(root=REPO_ROOT):
    # The emulator's twistd plugin is found through sys.path.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


def log_tail(log_path):
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    return lines[-1][:200] if lines else "no output"


def announced_port(log_path):
    match = re.search(r"^PORT (\d+)$", log_path.read_text(errors="replace"), re.M)
    return int(match.group(1)) if match else 0


def read_banner(port):
    """Connects and reads the greeting; None while nothing listens yet."""
    try:
        with socket.create_connection((HOST, port), timeout=START_TIMEOUT) as conn:
            reply = b""
            while not re.search(rb"(^|\n)\d{3} [^\n]*\n", reply):
                chunk = conn.recv(4096)
                if not chunk:
                    raise ServerStartError("closed the connection before its banner")
                reply += chunk
            return reply
    except ConnectionRefusedError:
        return None


def wait_for_banner(proc, log_path, port, started):
    while time.perf_counter() - started < START_TIMEOUT:
        if proc.poll() is not None:
            raise ServerStartError(f"exited with code {proc.returncode}: {log_tail(log_path)}")
        port = port or announced_port(log_path)
        banner = read_banner(port) if port else None
        if banner is not None:
            if not banner.startswith(b"220"):
                raise ServerStartError(f"greeted with {banner[:80]!r}")
            return port
        time.sleep(0.002)
    raise ServerStartError(f"no banner within {START_TIMEOUT:.0f} s: {log_tail(log_path)}")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def running(spec, scratch_root, tls_files=None, cpus=None):
    """Starts spec fresh (on cpus, if given), yields a Server once its banner was read, stops it."""
    scratch = Path(tempfile.mkdtemp(dir=scratch_root, prefix=spec.name + "-"))
    log_path = scratch / "server.log"
    port = 0 if spec.announces_port else free_port(HOST)
    argv = spec.argv(port, scratch) + (spec.tls_args(*tls_files) if tls_files else [])
    with open(log_path, "wb") as log:
        # Output goes to a file, never a pipe: a chatty server (twistd -n logs
        # every connection) would block on a pipe nobody drains.
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=spec.root, env=server_env(spec.root))
    try:
        if cpus:
            os.sched_setaffinity(proc.pid, cpus)
        port = wait_for_banner(proc, log_path, port, started)
        yield Server(proc.pid, port, time.perf_counter() - started)
    finally:
        stop(proc)
        shutil.rmtree(scratch, ignore_errors=True)


def cpu_seconds(pid):
    """utime + stime of a process, from /proc/<pid>/stat (fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may contain spaces; it ends at the last ")".
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid, field="VmRSS"):
    """Resident set size of a process (or another /proc/<pid>/status field in KiB)."""
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.M).group(1))


def peak_rss_kib(pid):
    return rss_kib(pid, "VmHWM")


def machine_busy_seconds():
    """CPU time all cores spent busy or stolen by the hypervisor, from /proc/stat."""
    with open("/proc/stat") as stat:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, stat.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def listen_overflows():
    """Connections this network namespace dropped because an accept queue was full."""
    with open("/proc/net/netstat") as netstat:
        lines = netstat.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split()))["ListenOverflows"])
    return 0
