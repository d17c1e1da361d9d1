"""
The recorder's middlebox type, and credentials kept out of its transcripts.

L{Recorder} passes every byte unchanged both ways (a middlebox type with no
rewriting: L{emulator.middlebox.Middlebox}'s hooks) and notes the TLS facts
a firewall can see: whether the EHLO reply listed STARTTLS and how STARTTLS
was answered.  After a C{2xx} to STARTTLS the relay passes ciphertext and
the recorder sees no more (C{=== tunnel}).

L{mask_credentials} gives a copy of a transcript in which what a client sent
in AUTH or XAUTH (the initial response and every line answering a C{334})
is replaced by L{MASK}, on both legs, with one C{credentials_masked} event
naming the verb and mechanism.  The recorder's store applies it before a
transcript is written, so that C{emulator learn}'s input never holds a
password.  Sans-IO: transcripts in, transcripts out.
"""

from __future__ import annotations

import dataclasses

from emulator.capture.transcript import Record, Transcript
from emulator.learn.dialogue import AUTH_LINE, read
from emulator.middlebox import Middlebox

MASK = b"********"
_AUTH_VERBS = ("AUTH", "XAUTH", "X-EXPS")  # Exchange 2000/2003's X-EXPS carries credentials too


class Recorder(Middlebox):
    """A middlebox that changes nothing: the recorder of C{emulator record}."""

    type = "recorder"

    def on_reply(self, relay, command: str, reply: bytes) -> bytes:
        if command == "EHLO" and reply[:1] == b"2":
            listed = [line[4:].strip().decode("latin-1") for line in reply.splitlines()[1:]
                      if line[4:].strip().upper() in (b"STARTTLS", b"TLS")]
            relay.event("starttls_listed", listed=bool(listed))
        elif command == "STARTTLS":
            relay.event("starttls_answered", code=int(reply[:3]) if reply[:3].isdigit() else 0)
        return reply


def mask_credentials(transcript: Transcript) -> Transcript:
    """A copy of C{transcript} with the credentials masked (see the module)."""
    records = list(transcript.records)
    inserts: list[tuple[int, Record]] = []
    for leg in ("", "server"):
        if not any(r.leg == leg and r.dir == "c" for r in records):
            continue
        session = read(transcript, leg)
        stream = b"".join(transcript.records[i].data for i, _ in session.client_records)
        ranges, current = [], None
        for step, start, end in session.spans:
            if step in _AUTH_VERBS:
                parts = stream[start:end].split(b" ", 2)
                current = {"verb": step, "mechanism": parts[1].decode("latin-1").upper() if len(parts) > 1 else "",
                           "leg": leg or "client", "lines": 0}
                if len(parts) == 3:
                    ranges.append((end - len(parts[2]), end))
                    current["lines"] += 1
                inserts.append((_record_at(session, start), Record(0.0, "event", event="credentials_masked",
                                                                   fields=current)))
            elif step == AUTH_LINE and current is not None:
                ranges.append((start, end))
                current["lines"] += 1
        for index, offset in session.client_records:
            record = records[index]
            records[index] = dataclasses.replace(record, data=_masked(record.data, offset, ranges))
    for index, event in sorted(inserts, key=lambda item: item[0], reverse=True):
        event.t = records[index].t
        records.insert(index, event)
    return dataclasses.replace(transcript, records=records)


def _record_at(session, position: int) -> int:
    """The transcript index of the client record holding stream byte C{position}."""
    found = session.client_records[0][0]
    for index, offset in session.client_records:
        if offset <= position:
            found = index
    return found


def _masked(data: bytes, offset: int, ranges: list[tuple[int, int]]) -> bytes:
    """C{data} (at C{offset} in the stream) with each range replaced by
    L{MASK} where the range begins and dropped elsewhere."""
    out, at = bytearray(), 0
    for start, end in ranges:
        lo, hi = max(start - offset, 0), min(end - offset, len(data))
        if lo >= hi:
            continue
        out += data[at:lo]
        if start >= offset:
            out += MASK
        at = hi
    out += data[at:]
    return bytes(out)
