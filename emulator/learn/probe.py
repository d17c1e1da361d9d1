"""
The probe over a real connection: each session of L{emulator.learn.script}
on a socket of its own (or in memory against a
L{emulator.testing.harness.Harness}), one transcript per session.

    paths = run("tcp:mail.example.net:25", Values("me@example.net"), Path("probe"))

Each transcript starts with a C{probe} event naming the target, the
session, the date (UTC) and the client's address as the server saw it;
a TLS session adds C{tls_established} (version, cipher, bits) and
C{tls_certificate} (names, key type and size).  The TLS sessions verify no
certificate: the probe learns what is there, it does not trust it.

Bounds: the sessions of the script, each read waiting C{timeout} seconds at
most, each session C{session_limit} seconds at most (the socket is shut
then), and no session started once C{deadline} seconds have passed.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

from emulator.capture.transcript import Transcript
from emulator.learn.files import write_transcript
from emulator.learn.script import SCRIPT, ProbeSession, ScriptClient, Values
from emulator.sender.host import HarnessLink, SocketLink, drive, parse_endpoint

_VERSIONS = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
             "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def context(version: str | None) -> ssl.SSLContext:
    """A client context that takes any certificate and offers C{version}
    only, or every version this machine's OpenSSL can (old ones at
    security level 0, as legacy servers need)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # offering TLS 1.0/1.1 is the point
        ctx.minimum_version = _VERSIONS[version] if version else ssl.TLSVersion.TLSv1
        if version:
            ctx.maximum_version = _VERSIONS[version]
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def sessions_to_run(starttls_listed: bool, starttls_worked: bool, versions: bool) -> Callable[[ProbeSession], bool]:
    def wanted(session: ProbeSession) -> bool:
        if not session.needs_starttls:
            return True
        if session.tls_version:
            return versions and starttls_worked
        return starttls_listed
    return wanted


def run(target: str, values: Values, out: Path, *, timeout: float = 10.0, session_limit: float = 60.0,
        deadline: float = 600.0, versions: bool = True, server_name: str | None = None,
        progress: Callable[[str], None] = lambda text: None) -> list[Path]:
    """Play the script against C{target} (C{tcp:HOST:PORT}, C{HOST:PORT} or
    C{HOST}: port 25); write C{out/NN-name.jsonl}; return the paths."""
    host, port = parse_endpoint(target, 25)
    end = time.monotonic() + deadline

    def connect(session: ProbeSession):
        sock = socket.create_connection((host, port), timeout=timeout)
        watchdog = threading.Timer(session_limit, _shut, (sock,))
        watchdog.daemon = True
        watchdog.start()
        local = sock.getsockname()
        return SocketLink(sock, context(session.tls_version)), f"{local[0]}:{local[1]}", watchdog.cancel

    return _run(f"tcp:{host}:{port}", values, out, connect, versions=versions, server_name=server_name,
                end=end, progress=progress)


def run_in_memory(harness: Callable[[], object], values: Values, out: Path, *, target: str = "memory",
                  progress: Callable[[str], None] = lambda text: None) -> list[Path]:
    """The script against in-memory servers: C{harness()} gives a fresh
    unconnected L{emulator.testing.harness.Harness} per session (its
    handshakes complete at once, so the version sessions are left out)."""
    def connect(session: ProbeSession):
        h = harness()
        return HarnessLink(h, None), f"{h.conn.session.peer_ip}:{h.conn.session.peer_port}", lambda: None

    return _run(target, values, out, connect, versions=False, server_name=None,
                end=time.monotonic() + 600, progress=progress)


def _run(target, values, out, connect, *, versions, server_name, end, progress) -> list[Path]:
    paths, keywords, worked = [], set(), False
    out.mkdir(parents=True, exist_ok=True)
    for number, session in enumerate(SCRIPT, 1):
        if not sessions_to_run("STARTTLS" in keywords, worked, versions)(session):
            continue
        if time.monotonic() > end:
            progress(f"deadline reached; {session.name} and later sessions not run")
            break
        client = ScriptClient(session, values, server_name)
        transcript = Transcript(f"probe-{number:02d}-{session.name}", "", target, time.monotonic())
        fields = {"target": target, "session": session.name, "date": _today()}
        if session.tls_version:
            fields["tls_version"] = session.tls_version
        try:
            link, local, done = connect(session)
        except OSError as e:
            progress(f"{session.name}: cannot connect to {target}: {e.strerror or e}")
            transcript.event(time.monotonic(), "probe", **fields)
            transcript.event(time.monotonic(), "connect_failed", reason=f"{type(e).__name__}: {e}")
            paths.append(write_transcript(out, f"{number:02d}-{session.name}.jsonl", transcript))
            break
        transcript.event(time.monotonic(), "probe", **fields, local=local)
        try:
            drive(client, link, transcript)
        finally:
            done()
        if session.name == "commands":
            keywords = client.keywords
        if session.name == "starttls":
            worked = bool(transcript.events("tls_established"))
        last = client.replies[-1].text if client.replies else "no reply"
        progress(f"{session.name}: {len(client.replies)} replies, the last {last!r}")
        paths.append(write_transcript(out, f"{number:02d}-{session.name}.jsonl", transcript))
    return paths


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()
