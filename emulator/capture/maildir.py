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

In memory the store keeps the latest messages within a byte budget
(L{emulator.capture.budget}): with a Maildir, only each message's name and
where its envelope line is, both being read back from the files when asked
for; without one, whole messages, as many of the newest as fit.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from emulator.core.actions import Message
from emulator.capture.budget import DEFAULT_BUDGET, Kept
from emulator.capture.files import write_all, write_atomically

# This process's id, for unique names: asked once (os.getpid() is a system
# call, one per message otherwise) and again in a forked child.
_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)

# Estimated bytes a kept entry holds besides its message bytes (memory
# only) or its name (with a Maildir): the objects around them, measured
# with tracemalloc (tests/unit/capture/test_budget.py checks the estimates).
_MESSAGE_OVERHEAD = 512
_SUMMARY_OVERHEAD = 200


class Captured:
    """A stored message: its Maildir file name (or None in memory only) and
    the message with its envelope.

    A message kept from a Maildir is only its name and where its envelope
    line is in C{envelopes.jsonl}: its C{envelope()} and its C{message} are
    read back from the files each time they are asked for (the message
    from C{new/}, or from C{cur/} if a mail client moved it there).  They
    raise C{FileNotFoundError} if the message's file is gone, and
    C{LookupError} if the envelope line is no longer where it was."""

    __slots__ = ("name", "_message", "_folder", "_at", "_size")

    def __init__(self, name: str, message: Message, path: Path | str | None):
        self.name = name
        self._message = message
        self._folder = os.path.dirname(path) if path else None
        self._at = self._size = 0

    @classmethod
    def stored(cls, name: str, folder: str, at: int, size: int) -> "Captured":
        """The message C{name} in C{folder} (a Maildir's C{new/}), whose
        envelope line is C{size} bytes at byte C{at} of C{envelopes.jsonl}."""
        captured = cls(name, None, None)
        captured._folder, captured._at, captured._size = folder, at, size
        return captured

    @property
    def path(self) -> Path | None:
        return Path(self._folder, self.name) if self._folder else None

    @property
    def message(self) -> Message:
        if self._message is not None:
            return self._message
        envelope = self.envelope()
        return Message(envelope["sender"].encode("latin-1"),
                       tuple(r.encode("latin-1") for r in envelope["recipients"]),
                       self._read(), envelope["peer"], envelope["profile"], envelope["helo"].encode("latin-1"),
                       envelope["tls"], envelope["auth_user"], envelope["session_id"])

    def envelope(self) -> dict:
        if self._message is not None:
            return envelope_of(self.name, self._message)
        log = os.path.join(os.path.dirname(self._folder), "envelopes.jsonl")
        with open(log, "rb") as file:
            line = os.pread(file.fileno(), self._size, self._at)
        try:
            envelope = json.loads(line)
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or envelope.get("name") != self.name:
            raise LookupError(f"{log} no longer holds the envelope of {self.name} at byte {self._at:,}")
        return envelope

    def _read(self) -> bytes:
        try:
            with open(os.path.join(self._folder, self.name), "rb") as file:
                return file.read()
        except FileNotFoundError:
            pass
        # A mail client moves what it has seen to cur/, adding ":2,FLAGS".
        cur = os.path.join(os.path.dirname(self._folder), "cur")
        with os.scandir(cur) as entries:
            moved = next((e.path for e in entries if e.name.startswith(self.name + ":")), None)
        if moved is None:
            raise FileNotFoundError(f"message {self.name} is no longer in {os.path.dirname(self._folder)}")
        with open(moved, "rb") as file:
            return file.read()

    def __repr__(self) -> str:
        return f"<Captured {self.name}{'' if self._message is not None else ' (on disk)'}>"


def envelope_of(name: str, m: Message) -> dict:
    return {
        "name": name, "sender": m.sender.decode("latin-1"),
        "recipients": [r.decode("latin-1") for r in m.recipients], "size": len(m.data),
        "peer": m.peer, "profile": m.profile, "helo": m.helo.decode("latin-1"), "tls": m.tls,
        "auth_user": m.auth_user, "session_id": m.session_id,
    }


class MessageStore:
    """Stores accepted messages in a Maildir (if given) and keeps the latest
    in memory for tests and the control API, within C{budget} bytes.

    @ivar recent: the kept messages (L{Captured}), oldest first; its
        C{dropped} counts those forgotten to stay within the budget."""

    def __init__(self, folder: Path | None = None, *, fsync: bool = False, budget: int = DEFAULT_BUDGET):
        self.folder = Path(folder) if folder else None
        self.fsync = fsync
        self.recent: Kept[Captured] = Kept(budget)
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
        name = f"{int(now)}.M{int(now % 1 * 1e6):06d}P{_pid}Q{self._seq}.{self._host}"
        if self.folder:
            envelope = json.dumps(envelope_of(name, message)).encode("utf-8") + b"\n"
            write_all(self._envelopes, envelope)  # O_APPEND: one write, one whole line
            # Where that line went: O_APPEND left the offset at its end, even
            # if another process appends to the same file.
            at = os.lseek(self._envelopes, 0, os.SEEK_CUR) - len(envelope)
            if self.fsync:
                os.fsync(self._envelopes)
            path = write_atomically(self._tmp, self._new, name, message.data, fsync=self.fsync)
            self.recent.append(Captured.stored(name, self._new, at, len(envelope)), len(name) + _SUMMARY_OVERHEAD)
            return Captured(name, message, path)
        captured = Captured(name, message, None)
        self.recent.append(captured, len(message.data) + _MESSAGE_OVERHEAD)
        return captured

    def clear(self) -> None:
        """Forget the in-memory copies (files on disk stay)."""
        self.recent.clear()

