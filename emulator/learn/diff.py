"""
Two sessions' server bytes compared, after template fields: what
C{emulator diff} prints and what the replay tests assert.

The server's bytes are read as L{emulator.learn.dialogue} reads them (the
server leg of a middlebox's transcript, else the connection; inside TLS the
probe's plaintext; never a middlebox's ciphertext), one reply at a time;
the dates and queue ids in them, which differ in every session, are
replaced by C{{date}} and C{{queue_id}} (L{emulator.learn.fields.normalize}).
Everything else must be equal byte for byte, line ends included.
"""

from __future__ import annotations

import difflib

from emulator.capture.transcript import Transcript, escape
from emulator.learn import dialogue
from emulator.learn.fields import normalize


def server_lines(transcript: Transcript) -> list[str]:
    """The server's replies, normalized, one line each in the arrow form
    (C{<-} outside TLS, C{<~} inside), with the step each one answers."""
    session = dialogue.read(transcript)
    out = []
    for x in session.exchanges:
        arrow = "<~" if x.tls else "<-"
        for line in x.reply.splitlines(keepends=True):
            text = normalize(line.decode("latin-1"))
            out.append(f"{arrow} {escape(text.encode('latin-1'))}")
    return out


def compare(a: Transcript, b: Transcript, names: tuple[str, str] = ("A", "B")) -> list[str]:
    """A unified diff of the two sessions' server lines; empty when they are the same."""
    return list(difflib.unified_diff(server_lines(a), server_lines(b), names[0], names[1], lineterm=""))
