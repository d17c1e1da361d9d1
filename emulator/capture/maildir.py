"""
Captured messages: a Maildir (C{tmp/}, C{new/}, C{cur/}) written the qmail
way, so that a message is in C{new/} whole or not at all.

Each message is written to C{tmp/}, optionally fsynced, then renamed into
C{new/}; its envelope is appended first, as one JSON line naming the file, to
C{envelopes.jsonl} in the Maildir's root.  The rename happens before the host
sends the C{250} that confirms the message,
so a client never sees a message accepted that a crash of the emulator
(even SIGKILL) could lose; with C{fsync}, a crash of the machine cannot
either.  The message bytes are exactly what the client sent, unstuffed.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from emulator.core.actions import Message
from emulator.capture.files import write_all, write_atomically


@dataclass(frozen=True)
class Captured:
    """A stored message: its Maildir file name (or None in memory only) and
    the message with its envelope."""

    name: str
    message: Message
    path: Path | None

    def envelope(self) -> dict:
        m = self.message
        return {
            "name": self.name, "sender": m.sender.decode("latin-1"),
            "recipients": [r.decode("latin-1") for r in m.recipients], "size": len(m.data),
            "peer": m.peer, "profile": m.profile, "helo": m.helo.decode("latin-1"), "tls": m.tls,
            "auth_user": m.auth_user, "session_id": m.session_id,
        }


class MessageStore:
    """Stores accepted messages in a Maildir (if given) and keeps the latest
    in memory for tests and the control API."""

    def __init__(self, folder: Path | None = None, *, fsync: bool = False, keep: int = 1000):
        self.folder = Path(folder) if folder else None
        self.fsync = fsync
        self.recent: deque[Captured] = deque(maxlen=keep)
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        self._seq = 0
        if self.folder:
            for sub in ("tmp", "new", "cur"):
                (self.folder / sub).mkdir(parents=True, exist_ok=True)
            self._tmp, self._new = str(self.folder / "tmp"), str(self.folder / "new")
            self._envelopes = os.open(self.folder / "envelopes.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def deliver(self, message: Message) -> Captured:
        """Store C{message}; raises C{OSError} if it could not be stored."""
        self._seq += 1
        now = time.time()
        name = f"{int(now)}.M{int(now % 1 * 1e6):06d}P{os.getpid()}Q{self._seq}.{self._host}"
        path = None
        if self.folder:
            envelope = json.dumps(Captured(name, message, None).envelope()).encode("utf-8") + b"\n"
            write_all(self._envelopes, envelope)  # O_APPEND: one write, one whole line
            if self.fsync:
                os.fsync(self._envelopes)
            path = Path(write_atomically(self._tmp, self._new, name, message.data, fsync=self.fsync))
        captured = Captured(name, message, path)
        self.recent.append(captured)
        return captured

    def clear(self) -> None:
        """Forget the in-memory copies (files on disk stay)."""
        self.recent.clear()

