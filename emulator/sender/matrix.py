"""
The conformance matrix: one client command against every server persona.

    emulator matrix --client 'python3 examples/smtplib_client.py {host} {port} --cafile {cafile} --mode {mode}'

For each row the server starts in this process on 127.0.0.1, port 0 (see
L{emulator.testing.harness.start_server}); the command runs with the placeholders
(L{PLACEHOLDERS}) filled in, for a bounded time; the row records what the
client did (its exit status), what the server saw (a message delivered or
not, its last reply) and the server's transcript, next to the expected
historical outcome from C{emulator/matrix.yaml}.  The table is written as
Markdown and HTML.

Rows come from L{targets}: every server persona by default, which includes
the shipped compositions (profiles with a C{middlebox:} section, such as
C{ims55sp4-pix}); a name C{MIDDLEBOX+PROFILE} asks for any middlebox type in
front of any persona.  Other kinds of row plug in through L{TARGET_SOURCES}:
a function of the requested names that yields L{Target}s, with their own
C{start} if they need one.
"""

from __future__ import annotations

import html
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, Sequence, TextIO

import yaml

from emulator.profiles import loader as profiles

PLACEHOLDERS = {
    "host": "the listener's address (127.0.0.1)",
    "port": "the listener's port",
    "cafile": "PEM file of the test CA that signs the servers' certificates",
    "mode": "smtps for a listener that starts with TLS (SMTPS), else smtp",
    "hostname": "the server's host name, the name its certificate carries",
}
# After the client exits, how long the server may take to see the connection close.
_SETTLE_SECONDS = 5.0
_KILL_WAIT = 5.0
#: What is kept of each of the client's output streams per row: a client
#: stuck at a prompt once wrote 200 MB into a row's transcript.
OUTPUT_LIMIT = 1 << 20
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


#: The client the C{outcome} of an expectation describes: a client of the
#: time (an MTA or mail client of 1998-2003) that used STARTTLS
#: opportunistically without checking the certificate, went on in plaintext
#: when STARTTLS failed or was refused, fell back to HELO when EHLO was
#: refused, and used SMTPS only where the persona offered it.
HISTORICAL_CLIENT = ("a client of the time: STARTTLS when listed, no certificate check, plaintext when "
                     "STARTTLS fails, HELO when EHLO is refused, SMTPS only where the persona offers it")


@dataclass(frozen=True)
class Expectation:
    """What a client of the time met: the KB article, the outcome in words
    and as C{delivered} (what L{HISTORICAL_CLIENT} got: True or False), and
    the source of that statement."""

    kb: str
    expected: str
    source: str
    delivered: bool


@dataclass(frozen=True)
class Target:
    """One row of the matrix.

    @ivar id: the row's name (a profile name, or a composition such as
        C{pix-mailguard+ims55sp3}).
    @ivar profile: the server profile behind it.
    @ivar implicit_tls: the listener starts with TLS (SMTPS).
    @ivar middlebox: a middlebox type to put in front of the profile.
    @ivar start: C{start(target, state_dir)} returns a running server with
        C{host}, C{port}, C{messages}, C{transcripts}, C{emulation} and
        C{stop()} (L{emulator.testing.harness.RunningServer}); None for
        L{emulator.testing.harness.start_server}.
    """

    id: str
    profile: str
    implicit_tls: bool = False
    middlebox: str | None = None
    start: Callable[["Target", Path], object] | None = None


@dataclass
class Row:
    """The result of one row."""

    target: Target
    expectation: Expectation | None
    command: list[str]
    status: int | None = None
    note: str = ""
    delivered: bool = False
    last_reply: str | None = None
    transcript: Path | None = None
    seconds: float = 0.0

    @property
    def exit(self) -> str:
        """The exit status as shown in the table."""
        return self.note if self.status is None else str(self.status)

    @property
    def verdict(self) -> str:
        return "delivered" if self.delivered else "not delivered"

    @property
    def history(self) -> str:
        """C{matches} or C{differs}: whether the client's outcome is the
        historical one; C{no expectation} or C{not run} otherwise."""
        if self.expectation is None:
            return "no expectation"
        if self.status is None and not self.delivered and self.note.startswith(("client not", "server did not")):
            return "not run"
        return "matches" if self.delivered == self.expectation.delivered else "differs"


def server_targets(names: Sequence[str] | None) -> Iterable[Target]:
    """One row per server persona (all of them when C{names} is None); a
    persona that offered TLS from the first byte gets an SMTPS listener."""
    known = profiles.names()
    for name in names if names is not None else known:
        if name not in known:  # a composition, or a mistake: targets() tells which
            continue
        loaded = profiles.load(name)
        yield Target(name, name, implicit_tls=loaded.tls.implicit)


def composition_targets(names: Sequence[str] | None) -> Iterable[Target]:
    """Rows asked for as C{MIDDLEBOX+PROFILE}: a middlebox type (see
    L{emulator.middlebox}) in front of a server persona."""
    from emulator import middlebox

    known = profiles.names()
    for name in names or ():
        box, plus, profile = name.partition("+")
        if plus and box in middlebox.types_() and profile in known:
            yield Target(name, profile, profiles.load(profile).tls.implicit, middlebox=box)


#: Functions C{source(names) -> Targets}, in table order; C{names} is None
#: for "everything this source offers by default".
TARGET_SOURCES: list[Callable[[Sequence[str] | None], Iterable[Target]]] = [server_targets, composition_targets]


def targets(names: Sequence[str] | None = None) -> list[Target]:
    """The rows for C{names} (every persona and composition when None).

    @raise profiles.ProfileError: a name that is no server persona.
    """
    found = [target for source in TARGET_SOURCES for target in source(names)]
    if names is not None:
        missing = [n for n in names if n not in {t.id for t in found}]
        if missing:
            raise profiles.ProfileError(missing[0], "(name)", "no server persona or composition of that name "
                                        f"(MIDDLEBOX+PROFILE); known personas: {', '.join(profiles.names())}")
    return found


@cache
def expectations() -> dict[str, Expectation]:
    """The expected outcomes of C{emulator/matrix.yaml}, by row id."""
    text = resources.files("emulator.sender").joinpath("matrix.yaml").read_text(encoding="utf-8")
    return {key: Expectation(**entry) for key, entry in yaml.safe_load(text).items()}


def fill(argument: str, values: dict[str, str]) -> str:
    """Put the values in for the placeholders C{{host}} etc.; other braces stay as they are."""
    for name, value in values.items():
        argument = argument.replace("{" + name + "}", value)
    return argument


def check_placeholders(template: Sequence[str]) -> None:
    """Refuse a C{{word}} that is no placeholder before anything runs (a
    misspelled C{{hots}} would reach the client as it is and the row would
    time out), with the known ones and a guess.

    @raise ValueError: one line naming the unknown placeholder.
    """
    import difflib

    for argument in template:
        for name in _PLACEHOLDER.findall(argument):
            if name not in PLACEHOLDERS:
                guess = difflib.get_close_matches(name, PLACEHOLDERS, n=1)
                hint = f" (did you mean {{{guess[0]}}}?)" if guess else ""
                known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                raise ValueError(f"--client: unknown placeholder {{{name}}}{hint}; known: {known}")


def run(command: str, names: Sequence[str] | None = None, *, out: Path, timeout: float = 30.0,
        state_dir: Path | None = None, progress: TextIO | None = None) -> list[Row]:
    """Run C{command} against each row, write C{out/matrix.md}, C{out/matrix.html}
    and one transcript per row in C{out/transcripts/}; return the rows.

    @param timeout: seconds each client run may take before it is killed.
    @param state_dir: where the test CA and certificates live (default: the emulator's).
    @param progress: a stream for one progress line per row (C{emulator matrix}: stderr).
    @raise ValueError: an empty command.
    """
    from emulator.tls.certs import CertStore
    from emulator.tls.context import default_state_dir

    template = shlex.split(command)
    if not template:
        raise ValueError("the client command is empty")
    check_placeholders(template)
    rows_for = targets(names)
    state_dir = Path(state_dir) if state_dir else default_state_dir()
    out = Path(out)
    (out / "transcripts").mkdir(parents=True, exist_ok=True)
    cafile = CertStore(state_dir).export_ca(out / "ca.pem").resolve()
    missing = shutil.which(template[0]) is None
    rows = []
    for number, target in enumerate(rows_for, 1):
        if progress:
            progress.write(f"[{number}/{len(rows_for)}] {target.id} ... ")
            progress.flush()
        row = Row(target, expectations().get(target.id), list(template))
        if missing:
            row.note = f"client not found: {template[0]}"
        else:
            _run_row(row, state_dir, cafile, out, timeout)
        rows.append(row)
        if progress:
            progress.write(f"{row.verdict}, exit {row.exit} ({row.seconds:.1f} s)\n")
    (out / "matrix.md").write_text(markdown(rows), encoding="utf-8")
    (out / "matrix.html").write_text(html_table(rows), encoding="utf-8")
    return rows


def _start(target: Target, state_dir: Path):
    from emulator.testing.harness import start_server

    if target.start is not None:
        return target.start(target, state_dir)
    return start_server(target.profile, state_dir=state_dir, implicit_tls=target.implicit_tls,
                        middlebox=target.middlebox)


def _run_row(row: Row, state_dir: Path, cafile: Path, out: Path, timeout: float) -> None:
    try:
        server = _start(row.target, state_dir)
    except (ValueError, OSError) as e:  # e.g. a middlebox in front of an SMTPS listener
        row.note = f"server did not start: {e}"
        return
    try:
        values = {"host": server.host, "port": str(server.port), "cafile": str(cafile),
                  "mode": "smtps" if row.target.implicit_tls else "smtp", "hostname": server.emulation.hostname}
        row.command = [fill(argument, values) for argument in row.command]
        started = time.monotonic()
        stdout, stderr = _execute(row, timeout)
        row.seconds = time.monotonic() - started
        settle(server)
        sessions = server.transcripts
        row.delivered = bool(server.messages)
        row.last_reply = _last_reply(sessions)
        row.transcript = out / "transcripts" / f"{row.target.id}.txt"
        row.transcript.write_text(_transcript_text(row, stdout, stderr, sessions), encoding="utf-8")
    finally:
        server.stop()


def _execute(row: Row, timeout: float) -> tuple[str, str]:
    """Run the client in its own process group, keeping at most
    L{OUTPUT_LIMIT} bytes of each output stream (the rest is read and
    counted, so the client never blocks on a full pipe); kill the group when
    time is up."""
    try:
        process = subprocess.Popen(row.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
    except FileNotFoundError:
        row.note = f"client not found: {row.command[0]}"
        return "", ""
    except PermissionError:
        row.note = f"client not executable: {row.command[0]}"
        return "", ""
    with process:
        output = _BoundedOutput(process)
        if not output.read(timeout):
            row.note = f"timed out after {timeout:g} s"
            os.killpg(process.pid, signal.SIGKILL)
            output.read(_KILL_WAIT)  # a descendant that left the group may hold the pipes: bounded
        try:
            status = process.wait(timeout=_KILL_WAIT)
        except subprocess.TimeoutExpired:
            status = None
        if not row.note:
            row.status = status
    return output.text(process.stdout), output.text(process.stderr)


class _BoundedOutput:
    """A client's two output streams, read until they close, each kept up
    to L{OUTPUT_LIMIT} bytes; the rest is read and counted, so the client
    never blocks on a full pipe."""

    def __init__(self, process: subprocess.Popen):
        self.kept = {stream: bytearray() for stream in (process.stdout, process.stderr)}
        self.dropped = dict.fromkeys(self.kept, 0)
        self.open = set(self.kept)

    def read(self, timeout: float) -> bool:
        """Read for at most C{timeout} seconds; True once both streams closed."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            for stream in self.open:
                selector.register(stream, selectors.EVENT_READ)
            while self.open:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                for key, _ in selector.select(left):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        self.open.discard(key.fileobj)
                        continue
                    kept = self.kept[key.fileobj]
                    room = max(0, OUTPUT_LIMIT - len(kept))
                    kept += chunk[:room]
                    self.dropped[key.fileobj] += max(0, len(chunk) - room)
        return True

    def text(self, stream) -> str:
        """What was kept of C{stream}, with a marked truncation."""
        text = self.kept[stream].decode("utf-8", "replace")
        if self.dropped[stream]:
            text += (f"\n[emulator matrix: {self.dropped[stream]} more bytes of output not kept: "
                     f"at most {OUTPUT_LIMIT} bytes per stream]\n")
        return text


def settle(server) -> None:
    """Wait, bounded, until the server has seen the client's connections close."""
    from emulator.testing.harness import ReactorThread

    deadline = time.monotonic() + _SETTLE_SECONDS
    while time.monotonic() < deadline and ReactorThread.call(lambda: bool(server.emulation.transcripts.open)):
        time.sleep(0.01)


def _last_reply(sessions) -> str | None:
    """The last reply the client saw: from the middlebox's session when
    there is one (see L{emulator.capture.summary.last_line})."""
    from emulator.capture.summary import last_line

    in_front = [t for t in sessions if t.middlebox]
    for transcript in reversed(in_front or sessions):
        reply = last_line(transcript, "s")
        if reply:
            return reply
    return None


def _transcript_text(row: Row, stdout: str, stderr: str, sessions) -> str:
    expectation = row.expectation
    lines = [f"# emulator matrix: {row.target.id} (server profile {row.target.profile})",
             f"# command: {shlex.join(row.command)}",
             f"# exit status: {row.exit}",
             f"# delivered: {'yes' if row.delivered else 'no'}"]
    if expectation:
        lines.append(f"# expected (KB {expectation.kb}): {expectation.expected}")
        lines.append(f"# history: {row.history} ({HISTORICAL_CLIENT}: "
                     f"{'delivered' if expectation.delivered else 'not delivered'})")
    parts = ["\n".join(lines) + "\n", "\n## client stdout\n", stdout, "\n## client stderr\n", stderr]
    for transcript in sessions:
        parts += [f"\n## server session {transcript.session_id} peer {transcript.peer}\n", transcript.human()]
    if not sessions:
        parts.append("\n## no server session (the client never connected)\n")
    return "".join(parts)


_COLUMNS = ("Profile", "KB", "Expected (historical)", "Exit status", "Delivered", "As history", "Last reply",
            "Transcript")


def _cells(row: Row) -> list[tuple[str, str | None]]:
    """(text, link) per column."""
    expectation = row.expectation
    link = f"transcripts/{row.transcript.name}" if row.transcript else None
    return [
        (row.target.id, None),
        (expectation.kb if expectation else "", None),
        (f"{expectation.expected} (source: {expectation.source})" if expectation else "(no expectation recorded)",
         None),
        (row.exit, None),
        ("yes" if row.delivered else "no", None),
        (row.history, None),
        (row.last_reply or "", None),
        ("transcript" if link else "", link),
    ]


def markdown(rows: list[Row]) -> str:
    """The table in Markdown (GitHub flavour)."""
    def cell(text: str, link: str | None) -> str:
        text = text.replace("|", "\\|").replace("\n", " ")
        return f"[{text}]({link})" if link else text

    out = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for row in rows:
        out.append("| " + " | ".join(cell(text, link) for text, link in _cells(row)) + " |")
    return "\n".join(out) + "\n"


def html_table(rows: list[Row]) -> str:
    """The table as a standalone HTML page."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in _COLUMNS)
    body = []
    for row in rows:
        cells = []
        for text, link in _cells(row):
            content = html.escape(text)
            if link:
                content = f'<a href="{html.escape(link)}">{content}</a>'
            cells.append(f"<td>{content}</td>")
        classes = ("delivered" if row.delivered else "not-delivered") + (" differs" if row.history == "differs" else "")
        body.append(f'<tr class="{classes}">{"".join(cells)}</tr>')
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>emulator matrix</title>\n"
            "<style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px;vertical-align:top}"
            "tr.delivered td:nth-child(5){background:#dfd}tr.not-delivered td:nth-child(5){background:#fdd}"
            "tr.differs td:nth-child(6){background:#fdd;font-weight:bold}</style>"
            "</head><body>\n<table>\n<tr>" + head + "</tr>\n" + "\n".join(body) + "\n</table>\n</body></html>\n")


def summary(rows: list[Row]) -> str:
    """One line: how many rows behaved as history, and which did not."""
    counts = {}
    for row in rows:
        counts.setdefault(row.history, []).append(row.target.id)
    parts = [f"{len(rows)} rows", f"{len(counts.get('matches', []))} as history"]
    for label in ("differs", "not run", "no expectation"):
        if counts.get(label):
            parts.append(f"{len(counts[label])} {'differ' if label == 'differs' else label} "
                         f"({', '.join(counts[label])})")
    return ", ".join(parts)


def junit_xml(rows: list[Row]) -> str:
    """The rows as a JUnit XML report, one test case per persona (a row
    that differs from history fails, one without an expectation or not run
    is skipped), for CI systems that show test reports."""
    from xml.etree import ElementTree as ET

    suite = ET.Element("testsuite", name="emulator matrix", tests=str(len(rows)),
                       failures=str(sum(r.history == "differs" for r in rows)),
                       skipped=str(sum(r.history in ("no expectation", "not run") for r in rows)),
                       time=f"{sum(r.seconds for r in rows):.3f}")
    for row in rows:
        case = ET.SubElement(suite, "testcase", classname="emulator.matrix", name=row.target.id,
                             time=f"{row.seconds:.3f}")
        expectation = row.expectation
        if row.history == "differs":
            want = "delivered" if expectation.delivered else "not delivered"
            ET.SubElement(case, "failure", message=f"expected {want} (KB {expectation.kb}), got {row.verdict}; "
                                                   f"exit {row.exit}; last reply {row.last_reply or '-'}").text = \
                f"{expectation.expected}\nsource: {expectation.source}"
        elif row.history in ("no expectation", "not run"):
            ET.SubElement(case, "skipped", message=row.note or "no expectation recorded")
        if row.transcript is not None and row.transcript.is_file():
            ET.SubElement(case, "system-out").text = row.transcript.read_text(encoding="utf-8")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
