"""Copy byte ranges between files in the kernel: copy_file_range, else sendfile, else read/write.

`copy_file_range` keeps the bytes out of user space (and on XFS/btrfs with reflinks shares the
extents instead of copying them). Some kernels and filesystems refuse it (EXDEV across
filesystems on old kernels, EINVAL/EOPNOTSUPP on some network and overlay filesystems, ENOSYS
in some sandboxes); then `sendfile` (still in-kernel) is tried, and then plain pread/pwrite.
`METHOD` forces one technique (tests use it to run every fallback for real).
"""

from __future__ import annotations

import errno
import os

# "auto" tries copy_file_range, then sendfile, then read/write; or one of those three names.
METHOD = "auto"
METHODS = ("copy_file_range", "sendfile", "readwrite")
# Errors meaning "this technique is not available here", not "the copy failed".
REFUSED = frozenset({errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})
READ_BLOCK = 4 << 20


class SourceTooShort(OSError):
    """A source file ended before the byte range to copy from it."""


class ExtentCopier:
    """Copies extents into one output file, remembering which technique works here."""

    def __init__(self, out_fd: int, method: str | None = None):
        self.out_fd = out_fd
        method = method or METHOD
        self.methods = list(METHODS) if method == "auto" else [method]
        if not set(self.methods) <= set(METHODS):
            raise ValueError(f"unknown copy method {method!r}")
        self._buffer: bytearray | None = None
        self.calls = 0  # system calls that moved bytes (the benchmark reports them)

    @property
    def method(self) -> str:
        """The technique in use now."""
        return self.methods[0]

    def copy(self, in_fd: int, in_offset: int, out_offset: int, length: int) -> None:
        """Copy `length` bytes from `in_fd` at `in_offset` to the output at `out_offset`."""
        while length > 0:
            try:
                moved = self._copy_some(in_fd, in_offset, out_offset, length)
            except OSError as error:
                if error.errno not in REFUSED or len(self.methods) == 1:
                    raise
                self.methods.pop(0)  # refused here: fall back for this and later extents
                continue
            if moved == 0:
                raise SourceTooShort(errno.EIO, f"source ends before byte {in_offset + length}")
            self.calls += 1
            in_offset += moved
            out_offset += moved
            length -= moved

    def _copy_some(self, in_fd: int, in_offset: int, out_offset: int, length: int) -> int:
        method = self.methods[0]
        if method == "copy_file_range":
            return os.copy_file_range(in_fd, self.out_fd, length, in_offset, out_offset)
        if method == "sendfile":
            # sendfile writes at the output's file position.
            os.lseek(self.out_fd, out_offset, os.SEEK_SET)
            return os.sendfile(self.out_fd, in_fd, in_offset, length)
        return self._read_write(in_fd, in_offset, out_offset, length)

    def _read_write(self, in_fd: int, in_offset: int, out_offset: int, length: int) -> int:
        if self._buffer is None:
            self._buffer = bytearray(READ_BLOCK)
        view = memoryview(self._buffer)[: min(length, READ_BLOCK)]
        got = os.preadv(in_fd, [view], in_offset)
        written = 0
        while written < got:
            written += os.pwrite(self.out_fd, view[written:got], out_offset + written)
        return got
