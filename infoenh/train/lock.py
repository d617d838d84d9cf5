"""One writer per run folder: an exclusive OS file lock on ``FOLDER/.lock``.

    with folder_lock("runs/demo"):        # a second process gets RunFolderLocked at once
        ...

The lock is ``flock`` on POSIX and ``msvcrt.locking`` on Windows: the operating system releases it
when the process ends in any way (exit, exception, SIGKILL), so no stale lock is ever left. The
file keeps the holder's pid, host and start time for the message a second writer sees. On a file
system without locks (some network mounts) a warning says so and the run goes on unlocked.
The same process may take the lock of one folder again (a ``fit`` inside ``train_seeds``): it is
counted, not re-locked.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Tuple

LOCK_NAME = ".lock"
_held: Dict[str, Tuple[int, object]] = {}    # resolved folder -> (depth, open file)


class RunFolderLocked(RuntimeError):
    """Another process is writing to the run folder."""


def _try_lock(f) -> None:
    if sys.platform == "win32":  # pragma: no cover - not run in CI
        import msvcrt

        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def check_writable(folder: Path) -> None:
    """Create ``folder`` and write (then remove) a probe file in it; a clear error if that fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        import tempfile

        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)   # O_EXCL: never through a link
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise PermissionError(f"cannot write to the run folder {folder} ({e.strerror or e}); choose a writable "
                              "--out") from e


def _open_lock_file(path: Path):
    """Open (create) the lock file for reading and writing without following a symlink: a planted
    ``.lock -> victim`` would otherwise have the victim truncated and overwritten. A symlink or
    anything but a regular file is refused."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    if os.path.islink(path):
        raise RunFolderLocked(f"{path} is a symbolic link (to {os.readlink(path)!r}), not a lock file; infoenh "
                              "never writes through it. Delete the link (or choose another --out)")
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:          # a link made between the check and the open
            raise RunFolderLocked(f"{path} is a symbolic link, not a lock file; infoenh never writes through "
                                  "it. Delete the link (or choose another --out)") from None
        raise
    import stat

    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunFolderLocked(f"{path} is not a regular file; delete it (or choose another --out)")
    return os.fdopen(fd, "r+")


@contextmanager
def folder_lock(folder) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created, and checked writable, first)."""
    folder = Path(folder)
    check_writable(folder)
    key = str(folder.resolve())
    if key in _held:
        depth, f = _held[key]
        _held[key] = (depth + 1, f)
        try:
            yield folder
        finally:
            d, f = _held[key]
            _held[key] = (d - 1, f)
        return
    f = _open_lock_file(folder / LOCK_NAME)
    try:
        try:
            _try_lock(f)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK) or isinstance(e, BlockingIOError):
                f.seek(0)
                holder = f.read().strip() or "unknown"
                f.close()
                raise RunFolderLocked(
                    f"another infoenh run is writing to {folder} (lock holder: {holder}); wait for it to end, "
                    "or choose another --out") from None
            warnings.warn(f"file locks are not supported where {folder} lives ({e.strerror or e}); make sure no "
                          "other run writes to this folder", RuntimeWarning, stacklevel=3)
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "since": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[1:6]}))
        f.flush()
        _held[key] = (1, f)
        try:
            yield folder
        finally:
            depth, _ = _held.pop(key)
    finally:
        if not f.closed:
            f.close()          # closing the file releases the lock
