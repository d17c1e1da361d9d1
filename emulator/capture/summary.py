"""
One session in one line's worth of facts, read from its transcript: who
(peer, listener, persona with its middlebox), TLS, authentication, messages
accepted, the last reply the client saw, and how the session ended.

The web console's session list and the control API's C{GET /sessions} show
these; everything is derived from the records, so a transcript read back
from its C{.jsonl} file summarizes the same as the live one.
"""

from __future__ import annotations

from emulator.capture.transcript import SpooledTranscript, Transcript, escape

#: How far back the last line of one direction is looked for: a reply or a
#: command is far shorter; message data (which can be megabytes) is not copied.
_TAIL = 4096

#: The values of C{outcome}, the one-word result the console filters on.
OUTCOMES = ("open", "delivered", "no message", "dropped", "failed")


def summarize(transcript: Transcript, *, open: bool = False, upstream: Transcript | None = None) -> dict:
    """The facts of C{transcript} as a JSON-ready dict.

    C{open}: the session is still going on (its store says so), which a
    transcript alone cannot tell before its C{closed} event.  C{upstream}:
    for a middlebox's session, the emulated server's session behind it,
    which holds the messages accepted.

    A finished session kept on disk (L{emulator.capture.transcript.StoredTranscript})
    is read back once for its summary, which it then keeps: listing the
    sessions (the console does four times a second) reads no file."""
    cached = getattr(transcript, "summary", None)
    if type(cached) is dict:
        return dict(cached)
    whole = transcript.load() if isinstance(transcript, SpooledTranscript) else transcript  # its spool read once
    summary = _summarize(whole, open, upstream)
    if hasattr(transcript, "summary") and not open:
        transcript.summary = dict(summary)
    return summary


def _summarize(transcript: Transcript, open: bool, upstream: Transcript | None) -> dict:
    events = [r for r in transcript.records if r.dir == "event"]
    tls = next((r.fields for r in reversed(events) if r.event == "tls_established"), None)
    auth = next((r.fields for r in reversed(events) if r.event == "auth"), None)
    faults = [r.fields.get("type", "") for r in events if r.event == "fault"]
    messages = len((upstream or transcript).events("message_accepted"))
    persona = transcript.profile
    if transcript.middlebox:
        persona = f"{transcript.middlebox} in front of {transcript.profile or transcript.upstream}"
    ended, outcome = _ending(transcript, events, messages, open)
    return {
        "session": transcript.session_id, "profile": transcript.profile, "persona": persona,
        "middlebox": transcript.middlebox or None, "upstream": transcript.upstream or None,
        "peer": transcript.peer, "listener": transcript.listener, "started": transcript.started, "seed": transcript.seed,
        "open": open, "records": len(transcript.records), "messages": messages,
        "tls": None if tls is None else {k: tls.get(k) for k in ("version", "cipher", "bits", "sni")},
        "auth": None if auth is None else {"user": auth.get("user"), "mechanism": auth.get("mechanism"),
                                           "outcome": auth.get("outcome")},
        "faults": faults, "last_reply": last_line(transcript, "s"), "ended": ended, "outcome": outcome,
    }


def last_line(transcript: Transcript, direction: str) -> str | None:
    """The last non-empty line C{direction} ("c" client, "s" server) sent
    on the client's side of the connection, escaped as in the arrow form;
    None if it sent nothing.  Bytes written inside a TLS session whose
    handshake never completed (an SMTPS banner queued for a client that
    gave up) never reached the other side, and do not count."""
    established = next((i for i, r in enumerate(transcript.records)
                        if r.dir == "event" and r.event == "tls_established"), len(transcript.records))
    tail = b""
    for index in range(len(transcript.records) - 1, -1, -1):
        record = transcript.records[index]
        if record.dir == direction and not record.leg and (not record.tls or index > established):
            tail = record.data[-_TAIL:] + tail
            if tail.rstrip(b"\r\n").count(b"\n") or len(tail) >= _TAIL:
                break
    lines = tail.rstrip(b"\r\n").rsplit(b"\n", 1)
    return escape(lines[-1].rstrip(b"\r")) if lines[-1].strip() else None


def _ending(transcript: Transcript, events: list, messages: int, open: bool) -> tuple[str, str]:
    """(how it ended, in a few words; its outcome, one of L{OUTCOMES})."""
    if open:
        return "open", "open"
    names = {r.event for r in events}
    closed = next((r.fields.get("reason", "") for r in reversed(events) if r.event == "closed"), "")
    failed = None
    if "internal_error" in names:
        failed = "internal error"
    elif "message_not_stored" in names:
        failed = "message not stored"
    elif "tls_failed" in names:
        reason = next(r.fields.get("reason", "") for r in events if r.event == "tls_failed")
        failed = f"TLS failed: {reason}" if reason else "TLS failed"
    elif "upstream_failed" in names:
        failed = "upstream failed"
    if failed:
        return failed, "failed"
    command = (last_line(transcript, "c") or "").upper()
    if command.startswith("QUIT"):
        ended = "QUIT"
    elif "idle_timeout" in names:
        ended = "idle timeout"
    elif "disconnect" in {r.fields.get("type") for r in events if r.event == "fault"}:
        ended = "fault: disconnect"
    elif "limit" in names:
        ended = "limit: " + next(str(r.fields.get("name")) for r in reversed(events) if r.event == "limit")
    elif closed.startswith("ConnectionAborted"):
        ended = "aborted"
    elif (last_line(transcript, "s") or "").startswith("421"):
        ended = "server closed (421)"
    else:
        ended = "client hung up"
    if messages:
        return ended, "delivered"
    return ended, "no message" if ended == "QUIT" else "dropped"
