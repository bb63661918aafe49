"""Writing files so that a crash, a Ctrl-C or a full disk never leaves half of one, and telling
a failed write (a full disk, a read-only or over-quota file system) from other errors.

Every state file skinsearch writes (``search.yaml``, ``confirmation.json``, a checkpoint's
``state.json``, a bundle's files) goes to a temporary name beside its target and is renamed over
it only once complete: a reader sees the old file or the new one, never a truncated one.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from skinsearch.errors import SkinsearchError

#: errno -> how a write that failed for lack of room or rights is described
WRITE_FAILURES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
}
# the same failures as their texts, for errors that reach the driver only as text (a trial's)
WRITE_FAILURE_TEXTS = (
    "No space left on device",
    "Disk quota exceeded",
    "Read-only file system",
    "database or disk is full",  # SQLite's
)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    payload = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with tmp.open("wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_failure(exc: BaseException) -> str | None:
    """What a failed write ran into (``WRITE_FAILURES``), or None for any other error."""
    if isinstance(exc, OSError) and exc.errno in WRITE_FAILURES:
        return WRITE_FAILURES[exc.errno]
    return write_failure_in(str(exc))


def write_failure_in(text: str) -> str | None:
    """The same as ``write_failure``, for an error known only by its text."""
    for known in WRITE_FAILURE_TEXTS:
        if known.lower() in text.lower():
            return "no space left on the device" if "full" in known else known.lower()
    return None


def free_mib(folder: Path) -> float:
    """MiB free for writing in the file system that holds ``folder`` (or its nearest parent)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free / 2**20


@contextlib.contextmanager
def signals_held() -> Iterator[list[int]]:
    """Hold off Ctrl-C and SIGTERM until the block ends, and yield the signals that came in
    it: for steps that must not be cut in two (a few renames, ``ray.init``, which can lose a
    KeyboardInterrupt raised inside it). The caller decides what a held signal then does."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received  # only the main thread receives signals
        return
    previous = {
        sig: signal.signal(sig, lambda signum, frame: received.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def press_ctrl_c() -> bool:
    """Do what a Ctrl-C would while Ray Tune runs: call the SIGINT handler Tune installed (its
    trials stop and its state keeps them unfinished). False when no such handler is installed
    (outside Tune's loop), where the caller decides."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signal.SIGINT, None)
        return True
    return False


#: the least free space (MiB) a search keeps on its storage; SKINSEARCH_MIN_FREE_MIB overrides it
MIN_FREE_MIB = 256.0
CHECK_EVERY_S = 1.0


@dataclass
class SpaceGuard:
    """Watches the free space of a local storage while a search writes to it.

    A search stops itself (as Ctrl-C would, so ``--resume`` carries it on) before the disk is
    full: when less is free than a reserve of ``max(floor, 2 x (running trials + 1) x the
    largest checkpoint so far)``, or as soon as any write failed for lack of space or rights.
    Stopping early is what keeps every file whole: Tune rewrites its own state files in place,
    and a write that fails half-way would leave them truncated.
    """

    folder: Path
    floor_mib: float = field(default_factory=lambda: _env_mib("SKINSEARCH_MIN_FREE_MIB"))
    largest_checkpoint_mib: float = 0.0
    reason: str = ""  # why the search must stop; empty while it may go on
    _checked_at: float = 0.0

    def reserve_mib(self, running: int) -> float:
        """The free space below which the search stops."""
        return max(self.floor_mib, 2.0 * (running + 1) * self.largest_checkpoint_mib)

    def preflight(self) -> str:
        """A reason not to start at all (less than the floor free), or an empty string."""
        free = free_mib(self.folder)
        if free >= self.floor_mib:
            return ""
        return (
            f"--storage: {self.folder} has {free:.0f} MiB free, less than the "
            f"{self.floor_mib:.0f} MiB a search keeps in reserve; free some space or choose "
            "another --storage (SKINSEARCH_MIN_FREE_MIB sets the reserve)"
        )

    def check(self, running: int) -> str:
        """Look at the free space (at most every ``CHECK_EVERY_S``); returns ``reason``."""
        if self.reason or time.monotonic() - self._checked_at < CHECK_EVERY_S:
            return self.reason
        self._checked_at = time.monotonic()
        free, reserve = free_mib(self.folder), self.reserve_mib(running)
        if free < reserve:
            self.reason = (
                f"the search stopped itself: {self.folder} has {free:.0f} MiB free, less than "
                f"the {reserve:.0f} MiB it keeps in reserve (SKINSEARCH_MIN_FREE_MIB sets the "
                "floor)"
            )
        return self.reason

    def failed_write(self, error: str) -> str:
        """Note an error text; a failed write (``write_failure_in``) stops the search."""
        what = write_failure_in(error)
        if what and not self.reason:
            self.reason = (
                f"the search stopped itself: a write to {self.folder} failed ({what}; "
                f"{free_mib(self.folder):.0f} MiB free)"
            )
        return self.reason

    def explain(self, exc: BaseException) -> str:
        """The reason to give for an error raised while the search ran: ``reason`` if the
        search had to stop already, a failed write, or any error while the storage is out of
        room (under a MiB, or the largest checkpoint, free); an empty string for the others."""
        if not self.reason and not self.failed_write(str(exc)):
            free = free_mib(self.folder)
            if free < max(1.0, self.largest_checkpoint_mib):
                self.reason = (
                    f"the search stopped itself: writing to {self.folder} failed "
                    f"({exc.__class__.__name__} with {free:.0f} MiB free)"
                )
        return self.reason

    def saw_checkpoint(self, folder: Path) -> None:
        """Note a checkpoint's size: the reserve grows with the largest."""
        try:
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
        except OSError:
            return
        self.largest_checkpoint_mib = max(self.largest_checkpoint_mib, size)


def _env_mib(name: str) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return MIN_FREE_MIB
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise SkinsearchError(
            f"{name}={text}: must be a number of MiB >= 0 (default {MIN_FREE_MIB:g})"
        )
    return value
