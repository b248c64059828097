"""Reading a policy file safely: the one reader of `plr compile`, `plr test`, `plr watch`,
`plr import`, the compiler's imports and the proxy.

A policy path may name anything: a FIFO or a device (an open can wait for ever, or have effects),
a file that is huge or still growing. ``read_policy_bytes`` reads regular files only, at most
``MAX_POLICY_BYTES``, and says why not in one sentence otherwise.
"""

from __future__ import annotations

import os
import stat

__all__ = ["MAX_POLICY_BYTES", "not_a_regular_file", "read_policy_bytes", "read_policy_text"]

MAX_POLICY_BYTES = 32 * 1024 * 1024  # a policy file, URL or Redis key: at most this many bytes


def not_a_regular_file(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is not read as a policy (a FIFO, a socket, a device, a
    directory), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kind = "not a regular file"
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            kind = name
    return f"{kind}, not a regular file: plr reads policies only from regular files"


def _too_big(limit: int) -> ValueError:
    return ValueError(f"the policy is larger than {limit} bytes (the limit for a policy file, URL or Redis key)")


def read_policy_bytes(path: str | os.PathLike[str], limit: int = MAX_POLICY_BYTES) -> bytes:
    """A local policy file's bytes. Regular files only (a symlink to one is fine): a FIFO, socket
    or device is refused without waiting on it; more than ``limit`` bytes is refused too, checked
    on the open file and by a bounded read (a file growing meanwhile cannot get past it).

    Raises ``ValueError`` for a file that is not a policy file, ``OSError`` if it cannot be
    opened (the message only, e.g. "No such file or directory")."""
    p = os.fspath(path)
    try:
        before = os.stat(p)  # never open a device or a FIFO at all (an open can have effects)
    except OSError as e:
        raise OSError(e.strerror or str(e)) from None
    why = not_a_regular_file(before.st_mode)
    if why:
        raise ValueError(why)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)  # O_NONBLOCK: swapped for a FIFO meanwhile, the open still returns
    except OSError as e:
        raise OSError(e.strerror or str(e)) from None
    try:
        st = os.fstat(fd)  # what was opened, not what the name pointed to a moment ago
        why = not_a_regular_file(st.st_mode)
        if why:
            raise ValueError(why)
        if st.st_size > limit:
            raise _too_big(limit)
        chunks: list[bytes] = []
        left = limit + 1  # one byte more than allowed tells a file that grew past the cap
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as e:
        raise OSError(e.strerror or str(e)) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise _too_big(limit)
    return data


def read_policy_text(path: str) -> str:
    """``read_policy_bytes`` as UTF-8 text: the compiler's reader for a policy and its imports."""
    data = read_policy_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (invalid byte at offset {e.start}); is this a .plr file?") from None
