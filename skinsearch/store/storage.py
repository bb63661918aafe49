"""Where a search's results live: a local folder, or an object-store URI (``s3://bucket/prefix``)
with a local mirror.

Ray Tune writes trial results, checkpoints and its experiment state to the URI itself (through
pyarrow, as Ray supports). Everything else skinsearch reads or writes by path (``search.yaml``,
``best``, ``report``, ``--resume``) works on the mirror: ``pull`` copies a search down before it is
read, ``push`` copies a file up after it is written. TensorBoard event files are written on the
node that runs the trial and uploaded under ``<uri>/<search>/tensorboard/<trial>``.

Credentials and endpoints come from the usual environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` for MinIO or another S3-compatible server),
which every node of a cluster needs too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from skinsearch.errors import SkinsearchError
from skinsearch.store.layout import SEARCH_FILE

MODEL_SUFFIXES = (".pt",)  # what a light pull leaves behind (reading results needs none)


@dataclass(frozen=True)
class Storage:
    """A results location. ``folder`` is where skinsearch reads and writes by path: the folder
    itself, or for a URI its local mirror."""

    folder: Path  # absolute
    uri: str | None = None  # None: ``folder`` is the storage

    def __str__(self) -> str:
        return self.uri or str(self.folder)

    def location(self, relative: str) -> str:
        """Where ``relative`` (a path under the storage) is, as Ray and users name it."""
        if self.uri is None:
            return str(self.folder / relative)
        return f"{self.uri}/{relative}"

    def push(self, path: Path) -> None:
        """Copy a file or a folder under ``folder`` up to the URI (nothing to do for a folder)."""
        if self.uri is not None:
            upload(path, self.location(path.relative_to(self.folder).as_posix()))

    def pull(self, name: str | None = None, models: bool = True) -> None:
        """Refresh the mirror: the search ``name`` whole (without model files unless ``models``),
        or with no name every search's ``search.yaml`` (enough to list and name searches)."""
        if self.uri is None:
            return
        fs, root = _filesystem(self.uri)
        if name is None:
            from pyarrow import fs as pafs

            top = pafs.FileSelector(root, recursive=False, allow_not_found=True)
            folders = [i.path for i in fs.get_file_info(top) if i.type == pafs.FileType.Directory]
            for info in fs.get_file_info([f"{f}/{SEARCH_FILE}" for f in folders]):
                if info.type == pafs.FileType.File:
                    _download(fs, info, self.folder / _relative(info.path, root))
            return
        base = f"{root}/{name}"
        shutil.rmtree(self.folder / name, ignore_errors=True)  # nothing stale (deleted checkpoints)
        for info in _files(fs, base, recursive=True):
            if models or not info.path.endswith(MODEL_SUFFIXES):
                _download(fs, info, self.folder / name / _relative(info.path, base))


def open_storage(text: str, write: bool) -> Storage:
    """The storage ``--storage`` names; checked writable when ``write``.

    Raises:
        SkinsearchError: for a URI scheme pyarrow does not know, or a location that cannot be used.
    """
    if "://" not in text:
        folder = Path(text).expanduser().resolve()
        if folder.exists() and not folder.is_dir():
            raise SkinsearchError(f"--storage: {folder} is a file, not a folder; choose a folder")
        if write:
            _check_local(folder)
        return Storage(folder)
    uri = text.rstrip("/")
    fs, root = _filesystem(uri)
    if not root:
        raise SkinsearchError(f"--storage: {text} names no bucket; use s3://BUCKET[/PREFIX]")
    if write:
        probe = f"{root}/.skinsearch-write-test"
        try:
            with fs.open_output_stream(probe) as out:
                out.write(b"ok")
            fs.delete_file(probe)
        except Exception as exc:
            raise SkinsearchError(
                f"--storage: cannot write to {uri} ({_first_line(exc)}); check that the bucket "
                "exists and the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
                "AWS_ENDPOINT_URL) allow writing"
            ) from None
    return Storage(mirror_folder(uri), uri)


def mirror_folder(uri: str) -> Path:
    """The local mirror of a URI: under $SKINSEARCH_CACHE, else ~/.cache/skinsearch/storage."""
    parsed = urlparse(uri)
    base = os.environ.get("SKINSEARCH_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "skinsearch", "storage"
    )
    return Path(base, parsed.scheme, parsed.netloc, parsed.path.strip("/")).resolve()


def is_uri(location: str) -> bool:
    return "://" in location


def basename(location: str) -> str:
    """The last part of a folder path or URI (a trial's folder name, wherever it is kept)."""
    return location.rstrip("/").rsplit("/", 1)[-1]


def upload(path: Path, uri: str) -> None:
    """Copy a local file, or a folder's files, to ``uri``."""
    fs, target = _filesystem(uri)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        dest = target if file == path else f"{target}/{file.relative_to(path).as_posix()}"
        with file.open("rb") as src, fs.open_output_stream(dest) as out:
            shutil.copyfileobj(src, out)


def fetch(uri: str, only: tuple[str, ...] = ()) -> Path:
    """A local copy of the folder at ``uri`` (only files whose names end with one of ``only``,
    when given), in a fresh temporary folder the caller removes."""
    fs, root = _filesystem(uri)
    local = Path(tempfile.mkdtemp(prefix="skinsearch-"))
    for info in _files(fs, root, recursive=True):
        if not only or info.path.endswith(only):
            _download(fs, info, local / _relative(info.path, root))
    return local


# -- pyarrow -------------------------------------------------------------------------------------


def _filesystem(uri: str) -> tuple[Any, str]:
    from pyarrow import fs as pafs

    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
    except Exception as exc:
        raise SkinsearchError(
            f"--storage: {uri} is not a storage URI pyarrow can open ({_first_line(exc)}); "
            "use a folder or s3://BUCKET/PREFIX"
        ) from None
    return filesystem, path.rstrip("/")


def _files(fs: Any, root: str, recursive: bool) -> list[Any]:
    from pyarrow import fs as pafs

    selector = pafs.FileSelector(root, recursive=recursive, allow_not_found=True)
    return [i for i in fs.get_file_info(selector) if i.type == pafs.FileType.File]


def _download(fs: Any, info: Any, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with fs.open_input_stream(info.path) as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out)
    if info.mtime is not None:  # the storage's time: "the most recent search" stays right
        stamp = info.mtime.timestamp()
        os.utime(dest, (stamp, stamp))


def _relative(path: str, root: str) -> str:
    return path[len(root) :].lstrip("/")


def _check_local(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".skinsearch-write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise SkinsearchError(
            f"--storage: cannot write to {folder} ({exc.strerror}); choose a writable folder"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:200]
