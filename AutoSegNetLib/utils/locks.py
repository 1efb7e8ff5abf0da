"""One process at a time per unit of work (a model fold, a preprocessed configuration): OS file locks.

The lock is the operating system's -- ``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows -- so it ends with
the process however the process ends (a crash or ``kill -9`` leaves nothing that blocks the next run). The lock
file itself stays: while the lock is held it records the holder (PID, host, command, start time), which a second
process quotes in its error; on release it is emptied. A record found in a lock that could be taken was left by
a process that died holding it: that is logged and the lock taken over.

Worker processes forked while a lock is held (data loaders, preprocessing pools) close their copy of the lock
file at once, so a worker that outlives its killed parent does not keep the lock.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shlex
import socket
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from AutoSegNetLib.errors import AutoSegNetError

log = logging.getLogger(__name__)

#: errno values of a lock that another process holds (flock: EWOULDBLOCK; msvcrt: EACCES or EDEADLOCK).
_HELD = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK)}
#: errno values of a file system without locks (some network file systems): run unlocked, with a warning.
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}
#: Windows locks a byte range and nobody may read a locked range, so lock a byte far beyond the holder record.
_WINDOWS_LOCK_OFFSET = 1 << 30
_held_fds: set[int] = set()


class LockedError(AutoSegNetError):
    """Another live process holds the lock; the message names it (PID, host, command, since when)."""

    def __init__(self, message: str, holder: LockHolder | None) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock: process id, host name, command line and start time (ISO 8601, local time zone)."""

    pid: int
    host: str
    command: str
    started: str

    @classmethod
    def this_process(cls) -> LockHolder:
        started = datetime.now().astimezone().isoformat(timespec="seconds")
        return cls(os.getpid(), socket.gethostname(), command_line(), started)

    def describe(self) -> str:
        return f"PID {self.pid} on host {self.host!r}, command `{self.command}`, running since {self.started}"

    def is_gone(self) -> bool:
        """True when this holder ran on this host and its process no longer exists (unknown elsewhere: False)."""
        return self.host == socket.gethostname() and not _process_exists(self.pid)


class FileLock:
    """An exclusive, non-blocking lock on ``path`` for ``what`` (e.g. "Training of Dataset004 2d fold 0").

    ``hint`` ends the error a second process gets (how to wait for or stop the holder). Use as a context manager
    or call :meth:`acquire` / :meth:`release`.
    """

    def __init__(self, path: str | os.PathLike, what: str, hint: str = "") -> None:
        self.path = Path(path)
        self.what = what
        self.hint = hint
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockedError` naming the holder; never waits."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        try:
            locked = _try_lock(fd, self.path)
        except BaseException:
            os.close(fd)
            raise
        if locked is False:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockedError(self._held_message(holder), holder)
        previous = _read_holder(fd)
        if previous is not None:
            _log_takeover(self.path, previous)
        _write_holder(fd, LockHolder.this_process())
        self._fd = fd
        _held_fds.add(fd)

    def release(self) -> None:
        """Empty the holder record and unlock (the file stays: removing it would race with a new holder)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _held_fds.discard(fd)
        try:
            os.ftruncate(fd, 0)
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _held_message(self, holder: LockHolder | None) -> str:
        if holder is None:
            who = "another process (it has not recorded itself yet)"
        elif holder.is_gone():
            who = (f"a process started by {holder.describe()}: PID {holder.pid} has ended, but a process it started "
                   "(e.g. a data worker) still holds the lock; end that process")
        else:
            who = holder.describe()
        return f"{self.what} is already running: {who} (lock file {self.path}). {self.hint}".rstrip()


@contextlib.contextmanager
def held(path: str | os.PathLike, what: str, hint: str = "") -> Iterator[FileLock]:
    """``with held(path, what):`` -- hold the :class:`FileLock` for the block."""
    with FileLock(path, what, hint) as lock:
        yield lock


def read_holder(path: str | os.PathLike) -> LockHolder | None:
    """The holder recorded in a lock file (None when empty, missing or unreadable); does not lock."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        return None
    try:
        return _read_holder(fd)
    finally:
        os.close(fd)


def command_line() -> str:
    """This process's command as typed: ``python -m AutoSegNetLib train 4 2d 0`` rather than ``__main__.py ...``."""
    argv = list(sys.argv) or ["python"]
    if Path(argv[0]).name == "__main__.py":
        argv = ["python", "-m", Path(argv[0]).parent.name, *argv[1:]]
    elif argv[0] == "-c":
        argv = ["python", "-c", "...", *argv[1:]]
    else:
        argv[0] = Path(argv[0]).name
    return shlex.join(argv)


# ----- the operating system's locks ------------------------------------------------------------------------
def _try_lock(fd: int, path: Path) -> bool | None:
    """True: locked; False: another process holds it; None: this file system has no locks (warned)."""
    try:
        if os.name == "nt":
            import msvcrt

            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in _HELD:
            return False
        if exc.errno in _UNSUPPORTED:
            log.warning("The file system of %s does not support file locks (%s); a second run of the same work "
                        "cannot be prevented there.", path, exc.strerror)
            return None
        raise


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):  # an unsupported lock (see _try_lock) has nothing to release
        if os.name == "nt":
            import msvcrt

            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)


def _read_holder(fd: int) -> LockHolder | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 1 << 16).decode("utf-8"))
        return LockHolder(int(data["pid"]), str(data["host"]), str(data["command"]), str(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # empty (released, or being written) or not ours


def _write_holder(fd: int, holder: LockHolder) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(asdict(holder)) + "\n").encode("utf-8"))


def _log_takeover(path: Path, previous: LockHolder) -> None:
    if previous.is_gone():
        state = "which is no longer running"
    else:
        state = "which no longer holds it (it ended without releasing the lock)"
    log.warning("Taking over the lock %s left by %s, %s.", path, previous.describe(), state)


def _process_exists(pid: int) -> bool:
    if os.name == "nt":
        return True  # no cheap check without extra packages; only used for messages
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _close_in_forked_child() -> None:
    for fd in list(_held_fds):
        with contextlib.suppress(OSError):
            os.close(fd)  # drops the child's reference only: the parent's flock stays
    _held_fds.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_forked_child)
