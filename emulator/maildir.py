"""
Captured messages: a Maildir (C{tmp/}, C{new/}, C{cur/}) written the qmail
way, so that a message is in C{new/} whole or not at all.

Each message is written to C{tmp/}, optionally fsynced, then renamed into
C{new/}; its envelope goes first to C{envelopes/<same name>.json}.  The
rename happens before the host sends the C{250} that confirms the message,
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
from dataclasses import asdict, dataclass
from pathlib import Path

from emulator.actions import Message


@dataclass(frozen=True)
class Captured:
    """A stored message: its Maildir file name (or None in memory only) and
    the message with its envelope."""

    name: str
    message: Message
    path: Path | None

    def envelope(self) -> dict:
        env = asdict(self.message)
        env.pop("data")
        for key in ("sender", "helo"):
            env[key] = env[key].decode("latin-1")
        env["recipients"] = [r.decode("latin-1") for r in env["recipients"]]
        env["name"] = self.name
        env["size"] = len(self.message.data)
        return env


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
            for sub in ("tmp", "new", "cur", "envelopes"):
                (self.folder / sub).mkdir(parents=True, exist_ok=True)

    def deliver(self, message: Message) -> Captured:
        """Store C{message}; raises C{OSError} if it could not be stored."""
        self._seq += 1
        now = time.time()
        name = f"{int(now)}.M{int(now % 1 * 1e6):06d}P{os.getpid()}Q{self._seq}.{self._host}"
        path = None
        if self.folder:
            envelope = Captured(name, message, None).envelope()
            self._write(self.folder / "envelopes" / f"{name}.json",
                        json.dumps(envelope, indent=1).encode("utf-8"))
            path = self._write(self.folder / "new" / name, message.data)
        captured = Captured(name, message, path)
        self.recent.append(captured)
        return captured

    def _write(self, final: Path, data: bytes) -> Path:
        tmp = self.folder / "tmp" / final.name
        with open(tmp, "wb") as f:
            f.write(data)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, final)
        if self.fsync:
            fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return final

    def clear(self) -> None:
        """Forget the in-memory copies (files on disk stay)."""
        self.recent.clear()
