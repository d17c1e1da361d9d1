"""
Transcripts: every byte of a connection, in both directions, exactly as read
and written, segment by segment, with times and events between them.

Two forms:
 - JSON lines (one file per session in the transcripts folder): a header
   object, then one object per record: C{{"t": seconds since the session
   began, "dir": "c" (from the client) or "s" (from the server), "tls": bool,
   "data": the bytes as a Latin-1 string}} or C{{"t", "event", ...fields}}.
   Latin-1 maps each byte to one character, so the bytes come back exactly.
 - the human form, in the arrows swaks users read: C{->} sent by the client,
   C{<-} sent by the server, C{~>}/C{<~} the same inside TLS, C{===} events.
   CRLF line ends are implied; other control bytes are escaped (C{\\r},
   C{\\n}, C{\\t}, C{\\xNN}, C{\\\\}); a line that ends in a single C{\\}
   had no line end in that segment.  Golden files use this form.
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

_ARROWS = {("c", False): "->", ("s", False): "<-", ("c", True): "~>", ("s", True): "<~"}
_ESCAPES = {0x5C: "\\\\", 0x0D: "\\r", 0x0A: "\\n", 0x09: "\\t"}
_PRINTABLE = {b: chr(b) for b in range(0x20, 0x7F) if b != 0x5C}


@dataclass(slots=True)
class Record:
    t: float
    dir: str  # "c", "s" or "event"
    data: bytes = b""
    tls: bool = False
    event: str = ""
    fields: dict = field(default_factory=dict)


@dataclass
class Transcript:
    """The records of one session, in order."""

    session_id: str
    profile: str = ""
    peer: str = ""
    started: float = 0.0
    listener: str = ""
    records: list[Record] = field(default_factory=list)
    seed: int | None = None  # the seed of the quirks' dice: the run replays with it

    def received(self, t: float, data: bytes, tls: bool = False) -> None:
        self.records.append(Record(t - self.started, "c", data, tls))

    def sent(self, t: float, data: bytes, tls: bool = False) -> None:
        self.records.append(Record(t - self.started, "s", data, tls))

    def event(self, t: float, name: str, /, **fields) -> None:
        self.records.append(Record(t - self.started, "event", event=name, fields=fields))

    def client_bytes(self) -> bytes:
        return b"".join(r.data for r in self.records if r.dir == "c")

    def server_bytes(self) -> bytes:
        return b"".join(r.data for r in self.records if r.dir == "s")

    def events(self, name: str | None = None) -> list[Record]:
        return [r for r in self.records if r.dir == "event" and (name is None or r.event == name)]

    def human(self) -> str:
        """The arrow form, without times (what golden files hold)."""
        return "".join(human_record(r) for r in self.records)

    def to_jsonl(self) -> str:
        header = {"session": self.session_id, "profile": self.profile, "peer": self.peer,
                  "started": self.started, "listener": self.listener, "seed": self.seed}
        lines = [json.dumps(header)]
        for r in self.records:
            if r.dir == "event":
                lines.append(json.dumps({"t": round(r.t, 6), "event": r.event, **r.fields}))
            else:
                lines.append(json.dumps({"t": round(r.t, 6), "dir": r.dir, "tls": r.tls,
                                         "data": r.data.decode("latin-1")}))
        return "\n".join(lines) + "\n"

    @classmethod
    def from_jsonl(cls, text: str) -> "Transcript":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        header = rows[0]
        transcript = cls(header["session"], header.get("profile", ""), header.get("peer", ""),
                         header.get("started", 0.0), header.get("listener", ""), seed=header.get("seed"))
        for row in rows[1:]:
            if "event" in row:
                fields = {k: v for k, v in row.items() if k not in ("t", "event")}
                transcript.records.append(Record(row["t"], "event", event=row["event"], fields=fields))
            else:
                transcript.records.append(Record(row["t"], row["dir"], row["data"].encode("latin-1"), row["tls"]))
        return transcript


def human_record(record: Record) -> str:
    if record.dir == "event":
        fields = " ".join(f"{k}={v}" for k, v in record.fields.items())
        return f"=== {record.event}{' ' + fields if fields else ''}\n"
    arrow = _ARROWS[record.dir, record.tls]
    out = []
    for line in record.data.splitlines(keepends=True):
        if line.endswith(b"\r\n") and b"\r" not in line[:-2] and b"\n" not in line[:-2]:
            out.append(f"{arrow} {escape(line[:-2])}\n")
        elif line.endswith(b"\n"):
            out.append(f"{arrow} {escape(line)}\n")
        else:
            out.append(f"{arrow} {escape(line)}\\\n")
    return "".join(out)


def escape(data: bytes) -> str:
    return "".join(_PRINTABLE.get(b) or _ESCAPES.get(b) or f"\\x{b:02x}" for b in data)


class TranscriptStore:
    """Keeps the latest sessions in memory and writes each finished one to
    C{folder/<session>.jsonl} (atomically: a reader never sees half a file)."""

    def __init__(self, folder: Path | None = None, keep: int = 1000):
        self.folder = Path(folder) if folder else None
        self.recent: deque[Transcript] = deque(maxlen=keep)
        self.open: dict[str, Transcript] = {}
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)

    def begin(self, transcript: Transcript) -> None:
        self.open[transcript.session_id] = transcript

    def finish(self, transcript: Transcript) -> None:
        self.open.pop(transcript.session_id, None)
        self.recent.append(transcript)
        if self.folder:
            path = self.folder / f"{transcript.session_id}.jsonl"
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text(transcript.to_jsonl(), encoding="ascii")
            os.replace(tmp, path)

    def all(self) -> list[Transcript]:
        return list(self.recent) + list(self.open.values())

    def get(self, session_id: str) -> Transcript | None:
        return self.open.get(session_id) or next(
            (t for t in self.recent if t.session_id == session_id), None)

    def clear(self) -> None:
        self.recent.clear()
