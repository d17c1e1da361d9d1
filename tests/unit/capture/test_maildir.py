"""Maildir names (emulator.capture.maildir): unique per process, as qmail's convention asks."""

import os
import re

from emulator.capture.maildir import MessageStore
from emulator.core.actions import Message


def message():
    return Message(b"a@example.org", (b"b@example.test",), b"Subject: x\r\n\r\nbody\r\n", "127.0.0.1:1",
                   "ims55sp4", b"client", None, None, "s1")


def test_a_name_carries_time_pid_and_a_sequence(tmp_path):
    """TIME.MUSECpPIDqSEQ.HOST: the process id is this process's, the sequence counts up."""
    store = MessageStore(tmp_path)
    first, second = store.deliver(message()).name, store.deliver(message()).name
    pattern = rf"\d+\.M\d{{6}}P{os.getpid()}Q(\d+)\.\S+"
    assert [int(re.fullmatch(pattern, n).group(1)) for n in (first, second)] == [1, 2]
    assert sorted(os.listdir(tmp_path / "new")) == sorted([first, second])


def test_a_forked_child_names_its_messages_with_its_own_pid(tmp_path):
    """The process id is asked once, not per message, and asked again after a fork: a child
    that stores into the same Maildir (a daemonizing twistd forks after the store exists) never
    reuses its parent's names."""
    store = MessageStore(tmp_path)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through the pipe)
        try:
            os.write(write, f"{os.getpid()} {store.deliver(message()).name}".encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        pid, name = os.read(read, 1024).decode().split(" ", 1)
    finally:
        os.close(read)
        os.waitpid(child, 0)
    assert f"P{pid}Q" in name and pid != str(os.getpid())
