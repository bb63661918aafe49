"""Writing files so that a crash, a Ctrl-C or a full disk never leaves half of one, and telling
a failed write (a full disk, a read-only or over-quota file system) from other errors.

Every state file skinsearch writes (``search.yaml``, ``confirmation.json``, a checkpoint's
``state.json``, a bundle's files) goes to a temporary name beside its target and is renamed over
it only once complete: a reader sees the old file or the new one, never a truncated one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

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
def signals_held() -> Iterator[None]:
    """Hold off Ctrl-C and SIGTERM for a few renames that must happen together."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: received.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            os.kill(os.getpid(), received[0])
