"""The searches in a storage, each a folder with its ``search.yaml``: writing and reading that
file, finding a search (by name, or the latest), naming a new one, and picking one to resume.

``search.yaml`` holds the resolved spec beside the results, as nanoGPT saves its config beside
the checkpoint, with the search's name, classes, planned trials, storage and tracking URI.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import warnings
from pathlib import Path
from typing import Any

import yaml

from skinsearch._files import write_atomic
from skinsearch._yaml import YamlTooLarge, load_yaml
from skinsearch.config.spec import SearchSpec, parse_spec
from skinsearch.errors import ResultsError, SkinsearchError
from skinsearch.store.layout import SEARCH_FILE
from skinsearch.store.records import SearchRecord
from skinsearch.store.storage import Storage, open_storage


def save_search_file(
    folder: Path,
    spec: SearchSpec,
    name: str,
    classes: list[str],
    trials: int,
    storage: Storage,
    tracking_uri: str,
    folds: int | None = None,
    confirms: str | None = None,
) -> Path:
    """Write the search's ``search.yaml`` in its folder; returns its path."""
    doc = {
        "spec": spec.to_yaml_dict(),
        "search": name,
        "classes": classes,
        "trials": trials,
        "storage": str(storage),  # the folder or URI
        "tracking_uri": tracking_uri,
        "folds": folds,
        "confirms": confirms,  # a confirmation's: the search it confirms
    }
    path = folder / SEARCH_FILE
    write_atomic(path, yaml.safe_dump(doc, sort_keys=False))
    return path


def load_search(experiment_dir: Path) -> SearchRecord:
    """A search's ``search.yaml`` as a ``SearchRecord`` (``search.Search.load`` reads the rest
    of the folder).

    Raises:
        ResultsError: one line naming the file, when it is missing, empty or not a search's.
    """
    path = experiment_dir / SEARCH_FILE
    saved, problem = _read_search_file(path)
    if saved is None:
        raise ResultsError(
            f"{path}: {problem}, so search {experiment_dir.name!r} cannot be read; restore "
            "the file from a backup, or choose another search with --name"
        )
    try:
        spec = parse_spec(saved["spec"], str(path))
    except SkinsearchError as exc:
        raise ResultsError(
            f"{exc.problems[0]} (a search.yaml this version cannot read; restore the file or "
            "choose another search with --name)"
        ) from None
    return SearchRecord(
        search=str(saved["search"]),
        spec=spec,
        classes=[str(c) for c in saved.get("classes") or []],
        trials=int(saved.get("trials") or 0),
        storage=str(saved.get("storage") or experiment_dir.parent),
        tracking_uri=saved.get("tracking_uri"),
        folds=saved.get("folds"),
        confirms=saved.get("confirms"),
    )


def _read_search_file(path: Path) -> tuple[dict[str, Any] | None, str]:
    # the document, or None and what is wrong with it
    try:
        saved = load_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "no such file"
    except (OSError, UnicodeDecodeError, yaml.YAMLError, YamlTooLarge) as exc:
        return None, f"not readable YAML ({exc.__class__.__name__})"
    if not isinstance(saved, dict):
        return None, "empty" if saved is None else "not a mapping"
    missing = [k for k in ("spec", "search") if not saved.get(k)]
    if missing or not isinstance(saved["spec"], dict):
        return None, f"has no {missing[0] if missing else 'spec mapping'}"
    return saved, ""


def _searches(storage: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every readable search under ``storage``, oldest first, with its ``search.yaml``; each
    broken one is skipped with a warning that names it."""
    found = []
    for path in sorted(storage.glob(f"*/{SEARCH_FILE}"), key=lambda p: p.stat().st_mtime):
        saved, problem = _read_search_file(path)
        if saved is None:
            warnings.warn(f"skipped search {path.parent.name} ({path}: {problem})", stacklevel=2)
            continue
        found.append((path.parent, saved))
    return found


def open_search(storage: str, name: str | None, models: bool) -> tuple[Storage, Path]:
    """The storage ``--storage`` names and the folder of search ``name`` (default: the latest)
    in it, copied down first when the storage is a URI (with its models when ``models``)."""
    where = open_storage(storage, write=False)
    where.pull()
    folder = find_search(where.folder, name, shown=str(where))
    where.pull(folder.name, models=models)
    return where, folder


def find_search(storage: Path, name: str | None, shown: str | None = None) -> Path:
    """The results folder of search ``name``, or of the most recent search under ``storage``
    that is not a confirmation of another (named ``shown`` in messages: a URI whose mirror
    ``storage`` is)."""
    shown = shown or str(storage)
    if name is not None:
        check_name(name)
        folder = storage / name
        if not (folder / SEARCH_FILE).exists():
            known = ", ".join(p.parent.name for p in sorted(storage.glob(f"*/{SEARCH_FILE}")))
            raise ResultsError(
                f"no search named {name!r} under {shown} (searches there: {known or 'none'})"
            )
        return folder
    # a confirmation (`best --confirm`, `confirm:`) is shown through the search it confirms
    found = [folder for folder, saved in _searches(storage) if not saved.get("confirms")]
    if not found:
        raise ResultsError(
            f"no search under {shown}; run `skinsearch run FILE` first or pass --storage"
        )
    return found[-1]


def new_search_name(storage: Storage, name: str, explicit: bool) -> str:
    """Claim a folder for a new search: ``name``, or when a search has it (and it was not given
    explicitly) ``name-2``, ``-3``... Each folder is made with one ``mkdir`` that fails when it
    exists, so searches started at the same moment never share one.

    Raises:
        SkinsearchError: for a name that is not a plain folder name, or an explicit one taken.
    """
    check_name(name)
    # a URI's searches are in its mirror (pulled before): any name there is taken
    folder = storage.folder
    folder.mkdir(parents=True, exist_ok=True)
    numbered = (f"{name}-{n}" for n in itertools.count(2))
    for candidate in [name] if explicit else itertools.chain([name], numbered):
        try:
            (folder / candidate).mkdir()
        except FileExistsError:
            continue
        return candidate
    raise SkinsearchError(
        f"--name: a search named {name!r} already exists under {storage}; choose another name"
    )


def release_search_name(storage: Storage, name: str) -> None:
    """Give back a folder ``new_search_name`` claimed, when the search stopped before writing
    anything in it (bad data, an unusable tracking store): nothing else is ever removed."""
    with contextlib.suppress(OSError):  # not empty: the search left results there
        (storage.folder / name).rmdir()


def unfinished_confirmation(storage: Storage, name: str) -> str | None:
    """The latest confirmation search of search ``name`` (``name-confirm``, ``-2``...): for a
    search with no saved confirmation, the one a Ctrl-C left unfinished; None when there is none."""
    found = None
    for candidate in _numbered(f"{name}-confirm"):
        saved, _ = _read_search_file(storage.folder / candidate / SEARCH_FILE)
        if saved is not None and saved.get("confirms") == name:
            found = candidate
    return found


def resumable(
    storage: Storage, name: str, spec: SearchSpec, file: Path
) -> tuple[str, str | None, int | None]:
    """The search to resume (the given name, else the latest numbered from it), checked against
    FILE; returns its name, tracking URI and planned trial count."""
    check_name(name)
    existing = [c for c in _numbered(name) if (storage.folder / c / SEARCH_FILE).is_file()]
    if not existing:
        raise SkinsearchError(
            f"--resume: no search named {name!r} under {storage}; check --name and --storage"
        )
    found = existing[-1]
    saved = load_search(storage.folder / found)
    # both through today's spec model: a setting added since (with its default) is no change
    was, now = saved.spec.to_yaml_dict(), spec.to_yaml_dict()
    if was != now:
        differ = sorted(k for k in {**was, **now} if was.get(k) != now.get(k))
        raise SkinsearchError(
            f"--resume: {file} ({', '.join(differ)}) differs from the search {found!r} was started "
            f"with; resume with the same file and options, or start a new search without --resume"
        )
    return found, saved.tracking_uri, saved.trials or None


def _numbered(name: str) -> list[str]:
    # the names new_search_name gives searches started from the same name, oldest first
    return [name] + [f"{name}-{n}" for n in range(2, 1000)]


def check_name(name: str) -> None:
    # the name is a folder under --storage: nothing may be written outside it
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or len(name) > 100:
        raise SkinsearchError(
            f"--name: {name!r} is not a folder name (use letters, digits, '.', '_' or '-', "
            "starting with a letter or digit)"
        )
