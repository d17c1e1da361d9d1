"""Cheap, atomic file writes for the stores (Maildir and transcripts)."""

from __future__ import annotations

import os
from collections.abc import Sequence

_BATCH = 512  # buffers per writev call (Linux takes up to IOV_MAX, 1024)


def write_all(fd: int, data: bytes | Sequence[bytes]) -> None:
    """Write all of C{data}: bytes, or pieces written in order with
    C{writev} (gathered by the kernel, never joined into a copy here)."""
    if isinstance(data, bytes):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        return
    pieces, index = list(data), 0
    while index < len(pieces):
        batch = pieces[index:index + _BATCH]
        written = os.writev(fd, batch)
        if not written and any(batch):
            raise OSError(f"writev to descriptor {fd} wrote nothing")
        for piece in batch:
            if written < len(piece):  # a short write: the rest of this piece goes next
                pieces[index] = memoryview(piece)[written:]
                break
            written -= len(piece)
            index += 1


def write_atomically(tmp_folder: str, folder: str, name: str, data: bytes | Sequence[bytes], *,
                     fsync: bool = False) -> str:
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
