"""Build lock: an exclusive lock file naming its holder (pid, host), refreshed while held, so a
lock left by a killed process is recovered instead of waited on forever."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from ..errors import LGError

log = logging.getLogger(__name__)

LOCK_STALE_S = 60.0  # a lock whose holder stopped refreshing it for this long is abandoned


class LockTimeout(LGError, RuntimeError):
    """Another live process held the build lock for longer than the timeout."""


def pid_alive(pid: int) -> bool:
    """Whether a process of this host has that pid (a stale lock or temp file has a dead owner)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists but belongs to someone else
        return True
    return True


class BuildLock:
    """An exclusive lock file holding {pid, host, token}; refreshed while held.

    A waiter removes the lock when its holder is a dead process on this host, or when nobody has
    refreshed it for `stale_after` seconds (a holder on another host of a shared file system),
    and gives up with LockTimeout after `timeout` seconds of waiting for a live holder.
    """

    def __init__(self, path: Path, timeout: float = 900.0, stale_after: float = LOCK_STALE_S):
        self.path, self.timeout, self.stale_after = Path(path), timeout, stale_after
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BuildLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "token": self.token}
        start, told = time.monotonic(), False
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._remove_if_stale():
                    continue
                waited = time.monotonic() - start
                if waited > self.timeout:
                    raise LockTimeout(f"gave up after {waited:.0f} s waiting for the build lock "
                                      f"{self.path} held by {self._read() or 'another process'}; "
                                      "if no build is running, delete that file") from None
                if waited > 30 and not told:
                    log.warning("waiting for %s, held by %s", self.path, self._read())
                    told = True
                time.sleep(0.2)
                continue
            self._hold(fd, info)
            return

    def _hold(self, fd: int, info: dict) -> None:
        """The lock file was created (fd): write who holds it and keep it fresh until release."""
        with os.fdopen(fd, "w") as fh:
            json.dump(info, fh)
        self._stop.clear()
        self._thread = threading.Thread(target=self._refresh, daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.token in self._read():  # never remove a lock that a waiter gave to someone else
            self.path.unlink(missing_ok=True)

    def _refresh(self) -> None:
        while not self._stop.wait(min(5.0, self.stale_after / 4)):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def _read(self, path: Path | None = None) -> str:
        try:
            return (path or self.path).read_text()
        except OSError:
            return ""

    def _remove_if_stale(self) -> bool:
        """True if the lock is gone now (stale and removed, or released meanwhile)."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        text = self._read()
        try:
            holder = json.loads(text)
        except ValueError:  # being written right now, or garbage: only age can tell
            holder = None
        holder = holder if isinstance(holder, dict) else {}
        pid = holder.get("pid")
        if (holder.get("host") == socket.gethostname() and isinstance(pid, int) and pid > 0
                and not pid_alive(pid)):
            why = f"its process {pid} is gone"
        elif age > self.stale_after:
            why = f"nobody refreshed it for {age:.0f} s"
        else:
            return False
        # Move it aside atomically, then make sure it is the lock we judged, not a new one.
        aside = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True
        if self._read(aside) != text:
            with contextlib.suppress(OSError):
                os.link(aside, self.path)  # give the new holder its lock back
        aside.unlink(missing_ok=True)
        log.warning("removed the stale lock %s (%s): %s", self.path, why, text.strip())
        return True
