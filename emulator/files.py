"""Cheap, atomic file writes for the stores (Maildir and transcripts)."""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomically(tmp_folder: str, folder: str, name: str, data: bytes, *, fsync: bool = False) -> str:
    """Write C{data} to C{tmp_folder/name}, then rename it to C{folder/name}:
    readers see all of it or nothing.  Raw descriptors keep this cheap; with
    C{fsync}, the file and then its folder are flushed to disk."""
    tmp, final = os.path.join(tmp_folder, name), os.path.join(folder, name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    if fsync:
        folder_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(folder_fd)
        finally:
            os.close(folder_fd)
    return final
