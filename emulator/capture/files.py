"""Cheap, atomic file writes for the stores (Maildir and transcripts)."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Sequence

_BATCH = 512  # buffers per writev call (Linux takes up to IOV_MAX, 1024)
_CHUNK = 1 << 20  # bytes per read and write where the kernel cannot copy
# What a kernel copy raises where it cannot copy between these files (another
# file system, an old kernel, a file system without it): the next way is tried.
_CANNOT_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


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


def append_copy(src: int, size: int, dst: int) -> None:
    """Append the first C{size} bytes of the file C{src} to the file C{dst}
    (opened with C{O_APPEND}), copied by the kernel (C{copy_file_range},
    else C{sendfile}), else read and written here a mebibyte at a time.
    The kernel's copies refuse an appending file: C{O_APPEND} is off
    meanwhile (the caller is the file's only writer)."""
    flags = fcntl.fcntl(dst, fcntl.F_GETFL)
    fcntl.fcntl(dst, fcntl.F_SETFL, flags & ~os.O_APPEND)
    try:
        os.lseek(dst, 0, os.SEEK_END)
        done = 0
        for copy in (_copy_file_range, _sendfile, _read_write):
            try:
                while done < size:
                    copied = copy(src, dst, done, size - done)
                    if not copied:
                        raise OSError(errno.EIO, f"descriptor {src} ended at byte {done:,} of {size:,}")
                    done += copied
                return
            except OSError as e:
                if copy is _read_write or e.errno not in _CANNOT_COPY:
                    raise
    finally:
        fcntl.fcntl(dst, fcntl.F_SETFL, flags)


def _copy_file_range(src: int, dst: int, offset: int, count: int) -> int:
    return os.copy_file_range(src, dst, count, offset)


def _sendfile(src: int, dst: int, offset: int, count: int) -> int:
    return os.sendfile(dst, src, offset, count)


def _read_write(src: int, dst: int, offset: int, count: int) -> int:
    data = os.pread(src, min(count, _CHUNK), offset)
    write_all(dst, data)
    return len(data)


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
