"""
Transcripts: every byte of a connection, in both directions, exactly as read
and written, segment by segment, with times and events between them.

Two forms:
 - JSON lines: a header object, then one object per record: C{{"t":
   seconds since the session began, "dir": "c" (from the client) or "s"
   (from the server), "tls": bool, "data": the bytes as a Latin-1 string}}
   or C{{"t", "event", ...fields}}.  Latin-1 maps each byte to one
   character, so the bytes come back exactly.  A store appends each run's
   sessions to one file, each when it ends (L{TranscriptStore}); an open
   session's earlier records may wait in a spool file meanwhile.
 - the human form, in the arrows swaks users read: C{->} sent by the client,
   C{<-} sent by the server, C{~>}/C{<~} the same inside TLS, C{===} events.
   CRLF line ends are implied; other control bytes are escaped (C{\\r},
   C{\\n}, C{\\t}, C{\\xNN}, C{\\\\}); a line that ends in a single C{\\}
   had no line end in that segment.  Golden files use this form.

A middlebox's transcript (L{emulator.middlebox}) holds both of its legs: a
record of the leg between the middlebox and the server has C{"leg": "server"}
in JSON and the arrows C{=>} (middlebox to server) and C{<=} (server to
middlebox) in the human form; the header names the middlebox and the
upstream (the emulated server's session id, or the upstream endpoint).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
import weakref
from json.encoder import encode_basestring_ascii as _json_string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from emulator.capture.budget import DEFAULT_BUDGET, Kept
from emulator.capture.files import append_copy, write_all

_ARROWS = {("c", False): "->", ("s", False): "<-", ("c", True): "~>", ("s", True): "<~"}
_SERVER_LEG_ARROWS = {"c": "=>", "s": "<="}
_END = {"": b"}\n", "server": b', "leg": "server"}\n'}  # a data record's JSON after its data
_ESCAPES = {0x5C: "\\\\", 0x0D: "\\r", 0x0A: "\\n", 0x09: "\\t"}
_PRINTABLE = {b: chr(b) for b in range(0x20, 0x7F) if b != 0x5C}

#: The bytes an open session's records may hold in memory (their data plus
#: the estimated overhead of each record, as L{held_bytes} counts them)
#: before a store with a folder moves them to the session's spool file.
#: 32 KiB: 200 concurrent sessions then hold at most about 6 MiB, an eighth
#: of a fresh server's resident memory (200 sessions of 100 messages left
#: the server at 1.49 times its start's resident memory, 1.53 at 64 KiB);
#: a spill is one C{writev} of a hundred records or so, tens of microseconds
#: every 32 KiB of traffic.
SPOOL_THRESHOLD = 32 * 1024
_NEVER = 1 << 62  # the room of a transcript that never spills (no store, or a spool that failed for good)


@dataclass(slots=True)
class Record:
    t: float
    dir: str  # "c", "s" or "event"
    data: bytes = b""
    tls: bool = False
    event: str = ""
    fields: dict = field(default_factory=dict)
    leg: str = ""  # "server": between a middlebox and the server


@dataclass
class Transcript:
    """The records of one session, in order."""

    session_id: str
    profile: str = ""
    peer: str = ""
    started: float = 0.0
    listener: str = ""
    records: list[Record] = field(default_factory=list)
    middlebox: str = ""
    upstream: str = ""
    seed: int | None = None  # the seed of the quirks' dice: the run replays with it
    # Set by a store with a folder (L{TranscriptStore.begin}): the bytes the
    # records may still grow by before C{_spill(self)} moves them to a spool.
    _room: int = field(default=_NEVER, init=False, repr=False, compare=False)
    _spill: Callable[["Transcript"], None] | None = field(default=None, init=False, repr=False, compare=False)
    _spool: "_Spool | None" = field(default=None, init=False, repr=False, compare=False)

    def received(self, t: float, data: bytes, tls: bool = False) -> None:
        self.records.append(Record(t - self.started, "c", data, tls))
        self._room -= len(data) + _RECORD_OVERHEAD
        if self._room < 0:
            self._spill(self)

    def sent(self, t: float, data: bytes, tls: bool = False) -> None:
        self.records.append(Record(t - self.started, "s", data, tls))
        self._room -= len(data) + _RECORD_OVERHEAD
        if self._room < 0:
            self._spill(self)

    def server_leg(self, t: float, dir: str, data: bytes) -> None:
        """Bytes on a middlebox's server leg: C{dir} "c" to the server, "s" from it."""
        self.records.append(Record(t - self.started, dir, data, leg="server"))
        self._room -= len(data) + _RECORD_OVERHEAD
        if self._room < 0:
            self._spill(self)

    def event(self, t: float, name: str, /, **fields) -> None:
        self.records.append(Record(t - self.started, "event", event=name, fields=fields))
        self._room -= _RECORD_OVERHEAD
        if self._room < 0:
            self._spill(self)

    def client_bytes(self) -> bytes:
        return b"".join(r.data for r in self.records if r.dir == "c" and not r.leg)

    def server_bytes(self) -> bytes:
        return b"".join(r.data for r in self.records if r.dir == "s" and not r.leg)

    def events(self, name: str | None = None) -> list[Record]:
        return [r for r in self.records if r.dir == "event" and (name is None or r.event == name)]

    @property
    def record_count(self) -> int:
        return len(self.records)

    @property
    def message_count(self) -> int:
        """Messages accepted in the session."""
        return accepted(self.records)

    def human(self) -> str:
        """The arrow form, without times (what golden files hold)."""
        return "".join(human_record(r) for r in self.records)

    def to_jsonl(self) -> str:
        return b"".join(self.jsonl_pieces()).decode("ascii")

    def jsonl_pieces(self) -> list[bytes]:
        """The JSON-lines form as ASCII pieces to write one after the other
        (with C{writev}: a large message's data is never copied into a line)."""
        return [self.header_line()] + record_pieces(self.records)

    def header_line(self) -> bytes:
        """The JSON-lines header, one ASCII line."""
        header = {"session": self.session_id, "profile": self.profile, "peer": self.peer,
                  "started": self.started, "listener": self.listener, "seed": self.seed}
        if self.middlebox:
            header.update(middlebox=self.middlebox, upstream=self.upstream)
        return json.dumps(header).encode("ascii") + b"\n"

    @classmethod
    def from_jsonl(cls, text: str) -> "Transcript":
        """The one session of a JSON-lines text (see L{read_sessions} for
        texts that may hold several, or a torn last line)."""
        sessions, _ = read_sessions(text)
        if len(sessions) != 1:
            raise TranscriptError(f"expected one session, found {len(sessions)}")
        return sessions[0]

    @classmethod
    def from_header(cls, header: dict) -> "Transcript":
        """An empty transcript from a JSON-lines header object."""
        return cls(header["session"], header.get("profile", ""), header.get("peer", ""),
                   header.get("started", 0.0), header.get("listener", ""),
                   middlebox=header.get("middlebox", ""), upstream=header.get("upstream", ""),
                   seed=header.get("seed"))

    def add_row(self, row: dict) -> None:
        """Append one JSON-lines record object."""
        if "event" in row:
            fields = {k: v for k, v in row.items() if k not in ("t", "event")}
            self.records.append(Record(row["t"], "event", event=row["event"], fields=fields))
        else:
            self.records.append(Record(row["t"], row["dir"], row["data"].encode("latin-1"), row["tls"],
                                       leg=row.get("leg", "")))


def accepted(records: list[Record]) -> int:
    """How many of C{records} are C{message_accepted} events."""
    return sum(1 for r in records if r.dir == "event" and r.event == "message_accepted")


def record_pieces(records: list[Record]) -> list[bytes]:
    """The JSON lines of C{records} as ASCII pieces (see L{Transcript.jsonl_pieces})."""
    pieces = []
    for r in records:
        if r.dir == "event":
            pieces.append(json.dumps({"t": round(r.t, 6), "event": r.event, **r.fields}).encode("ascii") + b"\n")
        else:  # the hot path: formatted directly
            pieces += (b'{"t": %.6f, "dir": "%s", "tls": %s, "data": ' % (
                r.t, r.dir.encode("ascii"), b"true" if r.tls else b"false"), json_bytes(r.data), _END[r.leg])
    return pieces


class TranscriptError(ValueError):
    """Text that is not a transcript; C{str()} says where, in one line."""


def read_sessions(text: str) -> tuple[list[Transcript], list[str]]:
    """Every session in a JSON-lines text, and notes on what was skipped.

    A text holds one session or several in a row: each header object
    (one with a C{"session"} key and no C{"t"}) begins the next.  A last line that
    is not valid JSON is a record torn by a crash while it was written: it
    is skipped and noted, and the sessions before it stand.  A crash while
    a store wrote a session that had spooled (L{TranscriptStore}) can also
    leave it cut after a whole line: it reads as the records it has.
    Anything else that is not a transcript raises L{TranscriptError}
    naming the line.
    """
    sessions: list[Transcript] = []
    notes: list[str] = []
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            if number == len(lines) and sessions and not text.endswith("\n"):
                notes.append(f"line {number}: a torn last record was skipped")
                break
            raise TranscriptError(f"line {number}: not a transcript record (not JSON)") from None
        if not isinstance(row, dict):
            raise TranscriptError(f"line {number}: not a transcript record (not a JSON object)")
        try:
            if "t" not in row and "session" in row:  # records all have a time; an event may name a session
                sessions.append(Transcript.from_header(row))
            elif not sessions:
                raise TranscriptError(f"line {number}: a record before any session header")
            else:
                sessions[-1].add_row(row)
        except (KeyError, TypeError, AttributeError, UnicodeEncodeError):
            raise TranscriptError(f"line {number}: not a transcript record (fields missing or of the wrong type)") \
                from None
    return sessions, notes


def human_record(record: Record) -> str:
    if record.dir == "event":
        # Values may come from the client (a user name): escaped like data.
        fields = " ".join(f"{k}={escape(str(v).encode('latin-1', 'replace'))}" for k, v in record.fields.items())
        return f"=== {record.event}{' ' + fields if fields else ''}\n"
    arrow = _SERVER_LEG_ARROWS[record.dir] if record.leg else _ARROWS[record.dir, record.tls]
    out = []
    for line in record.data.splitlines(keepends=True):
        if line.endswith(b"\r\n") and b"\r" not in line[:-2] and b"\n" not in line[:-2]:
            out.append(f"{arrow} {escape(line[:-2])}\n")
        elif line.endswith(b"\n"):
            out.append(f"{arrow} {escape(line)}\n")
        else:
            out.append(f"{arrow} {escape(line)}\\\n")
    return "".join(out)


# Marks with 0 the bytes json's ASCII encoder writes other than as themselves
# or as one of the five escapes below: other control bytes, and those above 0x7E.
_UNREPLACEABLE = bytes(int(0x20 <= b < 0x7F or b in b"\r\n\t") for b in range(256))


def json_bytes(data: bytes) -> bytes:
    """C{data} as a JSON string of Latin-1 characters, exactly what
    C{json.dumps(data.decode("latin-1"))} gives, as ASCII bytes.  Mail is
    mostly printable ASCII and line ends, escaped by five C{replace} passes
    in C after one table lookup per byte, about twice as fast as json's
    encoder on a large message (which also needs the text decoded first);
    other bytes, and short data (where the passes cost more than they save),
    take json's encoder."""
    if len(data) < 512 or 0 in data.translate(_UNREPLACEABLE):
        return _json_string(data.decode("latin-1")).encode("ascii")
    return b'"%s"' % data.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(
        b"\r", b"\\r").replace(b"\n", b"\\n").replace(b"\t", b"\\t")


def escape(data: bytes) -> str:
    return "".join(_PRINTABLE.get(b) or _ESCAPES.get(b) or f"\\x{b:02x}" for b in data)


# Estimated bytes a kept transcript holds besides its data bytes (per
# record, and per session), and a kept summary of one on disk; measured
# with tracemalloc (tests/unit/capture/test_budget.py checks the estimates).
_RECORD_OVERHEAD = 220
_SESSION_OVERHEAD = 512
_SUMMARY_OVERHEAD = 350


def held_bytes(transcript: Transcript) -> int:
    """About how many bytes C{transcript} holds in memory."""
    records = transcript.records
    return sum(len(r.data) for r in records) + _RECORD_OVERHEAD * len(records) + _SESSION_OVERHEAD


class StoredTranscript:
    """A finished session whose records are in a run's file: its header
    fields and counts stay in memory; everything else (C{records},
    C{human()}, C{events()} ...) is read back from the file each time it is
    asked for, and raises C{LookupError} if the file no longer holds it."""

    __slots__ = ("session_id", "profile", "peer", "started", "listener", "middlebox", "upstream", "seed",
                 "record_count", "message_count", "path", "offset", "length", "summary")

    def __init__(self, transcript: Transcript, path: str, offset: int, length: int, spooled: "_Spool | None" = None):
        self.session_id, self.profile, self.peer = transcript.session_id, transcript.profile, transcript.peer
        self.started, self.listener, self.seed = transcript.started, transcript.listener, transcript.seed
        self.middlebox, self.upstream = transcript.middlebox, transcript.upstream
        self.record_count, self.message_count = len(transcript.records), transcript.message_count
        if spooled is not None:  # the records before those still in memory
            self.record_count += spooled.records
            self.message_count += spooled.messages
        self.path, self.offset, self.length = path, offset, length
        self.summary = None  # its summary (emulator.capture.summary), kept once made: a finished session's is final

    def load(self) -> Transcript:
        """The whole transcript, read from its file."""
        with open(self.path, "rb") as file:
            data = os.pread(file.fileno(), self.length, self.offset)
        try:
            transcript = Transcript.from_jsonl(data.decode("latin-1")) if len(data) == self.length else None
        except ValueError:
            transcript = None
        if transcript is None or transcript.session_id != self.session_id:
            raise LookupError(f"{self.path} no longer holds session {self.session_id} "
                              f"at byte {self.offset:,}: was the file truncated or replaced?")
        return transcript

    def __getattr__(self, name: str):
        # Only for what is not a slot: the records and Transcript's methods.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.load(), name)

    def __repr__(self) -> str:
        return f"<StoredTranscript {self.session_id} in {self.path} at byte {self.offset:,}>"


class _Spool:
    """The records an open session moved out of memory (L{TranscriptStore}
    with a folder): their JSON lines, as the run's file will have them, in
    a file of the store's folder that has no name (made with C{O_TMPFILE},
    or unlinked as soon as it is open), so that nothing is left of it once
    it is closed, or after a crash.  It is closed when the session finishes
    (or when the last L{SpooledTranscript} made of it before is dropped).

    @ivar size: the bytes of whole records in the file (any after them are
        a failed write's, never read).
    @ivar records: how many records those are; C{messages}, how many of
        them are C{message_accepted} events.
    """

    __slots__ = ("fd", "size", "records", "messages", "__weakref__")

    def __init__(self, folder: str):
        self.size = self.records = self.messages = 0
        try:
            self.fd = os.open(folder, getattr(os, "O_TMPFILE", 0) | os.O_RDWR, 0o600)
        except OSError:  # a file system without O_TMPFILE
            self.fd, name = tempfile.mkstemp(prefix=".spool-", suffix=".tmp", dir=folder)
            try:
                os.unlink(name)
            except OSError:
                os.close(self.fd)
                raise
        weakref.finalize(self, os.close, self.fd)

    def append(self, records: list[Record]) -> None:
        """Write C{records} after those in the file; raises C{OSError} (the
        file then keeps what it had, or C{size} no longer says what it holds:
        see L{cut})."""
        pieces = record_pieces(records)
        write_all(self.fd, pieces)
        self.size += sum(map(len, pieces))
        self.records += len(records)
        self.messages += accepted(records)

    def cut(self) -> bool:
        """After a failed write: cut the file back to its whole records;
        whether more can be appended."""
        try:
            os.ftruncate(self.fd, self.size)
            os.lseek(self.fd, self.size, os.SEEK_SET)
        except OSError:
            return False
        return True

    def read(self, size: int | None = None) -> list[Record]:
        """The records of the file's first C{size} bytes (all its records by default)."""
        size = self.size if size is None else size
        chunks, done = [], 0
        while done < size:
            chunk = os.pread(self.fd, size - done, done)
            if not chunk:
                raise OSError(f"the spool of {size:,} bytes ended at byte {done:,}")
            chunks.append(chunk)
            done += len(chunk)
        holder = Transcript("")
        for line in b"".join(chunks).split(b"\n")[:-1]:
            holder.add_row(json.loads(line))
        return holder.records


_LIVE_FIELDS = frozenset(("session_id", "profile", "peer", "started", "listener", "middlebox", "upstream", "seed"))


class SpooledTranscript:
    """An open session whose earlier records are in its spool file, as
    L{TranscriptStore.get} and L{TranscriptStore.all} hand it out: the
    session as it was then.  Header fields come from the live transcript;
    C{record_count} and C{message_count} count every record; everything
    else (C{records}, C{human()}, C{events()} ...) is a L{Transcript} read
    back each time it is asked for (L{load}): the spool's records as the
    run's file will have them, then those that were still in memory."""

    __slots__ = ("live", "spool", "size", "spooled", "tail", "count", "summary")

    def __init__(self, live: Transcript):
        spool = live._spool
        self.live, self.spool, self.size, self.spooled = live, spool, spool.size, (spool.records, spool.messages)
        self.tail, self.count = live.records, len(live.records)  # a spill replaces the list, never empties it
        self.summary = None  # never kept: an open session's changes

    @property
    def record_count(self) -> int:
        return self.spooled[0] + self.count

    @property
    def message_count(self) -> int:
        return self.spooled[1] + accepted(self.tail[:self.count])

    def load(self) -> Transcript:
        """The whole transcript, as it was when this was made."""
        return dataclasses.replace(self.live, records=self.spool.read(self.size) + self.tail[:self.count])

    def __getattr__(self, name: str):
        # Only for what is not a slot: the header fields, the records and Transcript's methods.
        if name.startswith("_"):
            raise AttributeError(name)
        if name in _LIVE_FIELDS:
            return getattr(self.live, name)
        return getattr(self.load(), name)

    def __repr__(self) -> str:
        return f"<SpooledTranscript {self.live.session_id}: {self.record_count} records, {self.size:,} bytes spooled>"


class TranscriptStore:
    """Keeps the latest sessions in memory, within C{budget} bytes, and
    appends each finished one to this run's file in C{folder}.

    The run's file is C{folder/<UTC start time>-<pid>.jsonl}, created with
    the store; sessions follow one another in it in the order they ended,
    each written whole when it ends, so a session that has ended is in the
    file even if the emulator is killed next.  A write that fails is cut
    back off the file; should that fail too, later sessions go to a new
    file, so a torn record can only ever be a file's last line (which
    readers skip and report, L{read_sessions}).  Appending costs a few
    microseconds, where a file per session cost 40 (tmpfs) to 340 (ext4).

    An open session's records stay in memory up to C{spool_threshold} bytes
    (L{SPOOL_THRESHOLD}); with a folder, those so far are then appended to
    the session's spool file (L{_Spool}) and leave the memory, and so on.
    A session that never spooled is written by one C{writev}; one that did,
    in three writes: its header, its spool (copied by the kernel), then the
    records still in memory.  A crash in between can leave the run file's
    last session cut short: after a whole line (it reads as the records it
    has) or inside one (a torn last line, skipped and reported).  A spool
    that cannot be written keeps the records in memory instead.  C{get()}
    and C{all()} hand out such a session as a L{SpooledTranscript}, which
    has every record; the transcripts in C{open} have only those still in
    memory.

    With a folder, the memory keeps a summary per finished session
    (L{StoredTranscript}) and the records are read back when asked for;
    without one, whole transcripts, as many of the newest as fit.

    @ivar recent: the finished sessions kept, oldest first; its C{dropped}
        counts those forgotten to stay within the budget.
    @ivar open: the sessions still running, by session id.
    @ivar path: this run's file (None without a folder).
    """

    def __init__(self, folder: Path | None = None, *, budget: int = DEFAULT_BUDGET,
                 spool_threshold: int = SPOOL_THRESHOLD):
        self.folder = Path(folder) if folder else None
        self.recent: Kept[Transcript | StoredTranscript] = Kept(budget)
        self.open: dict[str, Transcript] = {}
        self.path: str | None = None
        self.spool_threshold = spool_threshold
        self._spill_to_spool = self._spill  # one bound method for every session
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._fd = self._create()

    def close(self) -> None:
        """Close the run's file (a store that is garbage collected closes it too)."""
        if self.folder:
            self._closer()

    def _create(self) -> int:
        """Open a new run file, never one that exists (another process, or
        another store in this one, may be appending to it)."""
        stem = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}"
        for attempt in range(1000):
            path = os.path.join(self.folder, f"{stem}-{attempt}.jsonl" if attempt else f"{stem}.jsonl")
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            except FileExistsError:
                continue
            self.path = path
            self._closer = weakref.finalize(self, os.close, fd)
            return fd
        raise FileExistsError(f"{self.folder}: 1,000 run files named {stem}*.jsonl already")

    def begin(self, transcript: Transcript) -> None:
        self.open[transcript.session_id] = transcript
        if self.folder:
            transcript._room, transcript._spill = self.spool_threshold, self._spill_to_spool

    def _spill(self, transcript: Transcript) -> None:
        """Move C{transcript}'s records to its spool file; should that fail,
        they stay in memory, and the next try is after as many bytes again
        (or never, if the spool cannot be cut back to its whole records)."""
        spool, transcript._room = transcript._spool, self.spool_threshold
        try:
            if spool is None:
                spool = transcript._spool = _Spool(str(self.folder))
            spool.append(transcript.records)
        except (OSError, TypeError, ValueError) as e:  # JSON's errors: finish() will raise them
            if not isinstance(e, OSError) or not (spool is None or spool.cut()):
                transcript._room = _NEVER
            return
        transcript.records = []

    def finish(self, transcript: Transcript) -> None:
        """Keep C{transcript} and append it to the run's file; raises
        C{OSError} if it could not be written (the file stays whole, and
        the memory keeps the whole transcript, its only copy then)."""
        try:
            self._keep(transcript)
        finally:
            # Only now: a reader in another thread (a test's) always finds the session in one list.
            self.open.pop(transcript.session_id, None)

    def _keep(self, transcript: Transcript) -> None:
        spool, transcript._spool, transcript._room = transcript._spool, None, _NEVER
        if not self.folder:
            self.recent.append(transcript, held_bytes(transcript))
            return
        fd, path = self._fd, self.path
        offset = os.lseek(fd, 0, os.SEEK_END)
        pieces = transcript.jsonl_pieces()
        try:
            if spool is None:
                write_all(fd, pieces)
            else:  # the header, the spool's records, then those still in memory
                write_all(fd, pieces[0])
                append_copy(spool.fd, spool.size, fd)
                write_all(fd, pieces[1:])
        except OSError:
            if spool is not None:  # the memory keeps the whole transcript, its only copy then
                try:
                    transcript.records = spool.read() + transcript.records
                except (OSError, ValueError):
                    pass
                spool = None
            self.recent.append(transcript, held_bytes(transcript))
            try:
                os.ftruncate(fd, offset)
            except OSError:
                self._closer()
                self._fd = self._create()
            raise
        length = sum(map(len, pieces)) + (spool.size if spool is not None else 0)  # pieces: all but the spool
        self.recent.append(StoredTranscript(transcript, path, offset, length, spool),
                           _SUMMARY_OVERHEAD + len(transcript.session_id) + len(transcript.peer))

    def all(self) -> list[Transcript | StoredTranscript]:
        """The finished sessions kept, then the open ones; each once (one
        that is finishing at this moment is listed as open)."""
        opened = dict(self.open)
        return [t for t in self.recent if t.session_id not in opened] + [
            t if t._spool is None else SpooledTranscript(t) for t in opened.values()]

    def get(self, session_id: str) -> Transcript | StoredTranscript | SpooledTranscript | None:
        live = self.open.get(session_id)
        if live is not None:
            return live if live._spool is None else SpooledTranscript(live)
        return next((t for t in self.recent if t.session_id == session_id), None)

    def clear(self) -> None:
        """Forget the finished sessions kept in memory (the files stay)."""
        self.recent.clear()
