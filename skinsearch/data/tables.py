"""Data sets as people download them: a labels table (CSV or TSV: HAM10000's metadata, ISIC's
one-hot ground truth, a clinic's export) over a folder of images, split without leaks.

A table names each image by an id (a file name, a relative path, or a name without extension
that resolves to the one image of that name) and gives its label in one column (``dx``) or as
one-hot columns (``MEL,NV,...``). With a group column (``lesion_id``, ``patient_id``) no group
is ever in two splits: the splits are drawn over groups, stratified by class and seeded
(scikit-learn's ``StratifiedGroupKFold``). A split column (train/val/test) is used as it is. The
test split is listed and never decoded for a search: nothing a search decides reads it.

Every problem is one ``DataError`` line naming the table, the row (the file's line number) and
what to change.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from skinsearch.data.folders import DEFAULT_VAL_FRACTION, IMAGE_SUFFIXES, DatasetFiles
from skinsearch.data.splits import Fractions, Row, split_rows, split_table
from skinsearch.errors import DataError


class DataSpec(Protocol):
    """The ``data:`` settings a table is read with (``config.spec.DataSpec`` has them)."""

    @property
    def labels(self) -> str | None: ...
    @property
    def builtin(self) -> str | None: ...
    @property
    def is_table(self) -> bool: ...
    @property
    def images(self) -> str | None: ...
    @property
    def image_column(self) -> str | None: ...
    @property
    def label_column(self) -> str | None: ...
    @property
    def label_columns(self) -> list[str] | None: ...
    @property
    def classes(self) -> list[str] | None: ...
    @property
    def class_map(self) -> dict[str, str | None] | None: ...
    @property
    def group_column(self) -> str | None: ...
    @property
    def split_column(self) -> str | None: ...
    @property
    def val_fraction(self) -> float | None: ...
    @property
    def test_fraction(self) -> float | None: ...


TABLE_SUFFIXES = (".csv", ".tsv")
IMAGE_COLUMNS = ("image_id", "image", "image_name", "file_name", "filename", "path")
LABEL_COLUMNS = ("dx", "label", "diagnosis", "class")
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
ONE_HOT_VALUES = {"0", "1", "0.0", "1.0"}
SHOWN = 3  # ids or rows named in an error before "..."


def scan_table(data: DataSpec, seed: int) -> DatasetFiles:
    """The images a labels table lists, labelled, split into train, val and test.

    Raises:
        DataError: one line for each problem the module docstring lists.
    """
    table = Path(data.labels) if data.labels is not None else _builtin_table(data.builtin)
    images = Path(data.images) if data.images else table.parent
    if not table.is_file():
        raise DataError(f"data.labels: {table} is not a file (give a CSV or TSV labels table)")
    if not images.is_dir():
        raise DataError(f"data.images: {images} is not a folder (the folder of the table's images)")
    header, records = _read(table)
    rows = _rows(table, header, records, data)
    class_names = _class_names(table, rows, data.classes)
    index = {name: i for i, name in enumerate(class_names)}
    files = _resolve(table, images, rows)
    val_fraction = data.val_fraction if data.val_fraction is not None else DEFAULT_VAL_FRACTION
    split, how = split_rows(
        table,
        rows,
        index,
        Fractions(val_fraction, data.test_fraction, seed),
        data.group_column,
        data.split_column,
    )
    out: dict[str, list[tuple[Path, int]]] = {"train": [], "val": [], "test": []}
    for row in rows:
        out[split[row.line]].append((files[row.line], index[row.label]))
    missing = sorted(set(class_names) - {class_names[y] for _, y in out["train"]})
    if missing:
        raise DataError(
            f"data.labels: {table}: class {missing[0]!r} has no training image after the "
            "split (add images of it, or lower data.val_fraction/test_fraction)"
        )
    if not out["val"]:
        raise DataError(f"data.labels: {table}: the split left no val image ({how})")
    groups = {files[r.line]: r.group for r in rows if r.group is not None}
    return DatasetFiles(
        images, class_names, out["train"], out["val"], how, test=out["test"], groups=groups
    )


def split_lines(data: DataSpec, seed: int) -> list[str]:
    """What ``validate`` prints of a labels table: its split per class (none for a folder)."""
    return split_table(scan_table(data, seed)) if data.is_table else []


def _builtin_table(name: str | None) -> Path:
    from skinsearch.data.synthetic import synthetic_table

    assert name == "synthetic_table", name  # DataSpec.is_table: the only built-in table
    return synthetic_table()


def _read(table: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    try:
        text = table.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"data.labels: {table}: cannot be read as UTF-8 text ({exc})") from None
    delimiter = "\t" if table.suffix.lower() == ".tsv" or "\t" in text.split("\n", 1)[0] else ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    try:
        header = [c.strip() for c in next(reader)]
    except StopIteration:
        raise DataError(
            f"data.labels: {table} is empty (give a header line, then a row per image)"
        ) from None
    repeated = [c for c, n in Counter(header).items() if n > 1]
    if repeated:
        raise DataError(f"data.labels: {table}: column {repeated[0]!r} appears twice in the header")
    records = []
    for line, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue  # blank lines
        if len(values) != len(header):
            raise DataError(
                f"data.labels: {table}, line {line}: {len(values)} fields where the header has "
                f"{len(header)}"
            )
        records.append((line, {c: v.strip() for c, v in zip(header, values, strict=True)}))
    if not records:
        raise DataError(f"data.labels: {table} has a header but no rows")
    return header, records


def _column(
    table: Path, header: list[str], key: str, given: str | None, defaults: Sequence[str]
) -> str | None:
    if given is not None:
        if given not in header:
            raise DataError(
                f"data.{key}: {table} has no column {given!r} (columns: {', '.join(header)})"
            )
        return given
    return next((c for c in defaults if c in header), None)


def _rows(
    table: Path, header: list[str], records: list[tuple[int, dict[str, str]]], data: DataSpec
) -> list[Row]:
    image_col = _column(table, header, "image_column", data.image_column, IMAGE_COLUMNS)
    if image_col is None:
        raise DataError(
            f"data.labels: {table} has no image column (looked for {', '.join(IMAGE_COLUMNS)}; "
            f"columns: {', '.join(header)}); name it with data.image_column"
        )
    group_col = _column(table, header, "group_column", data.group_column, ())
    split_col = _column(table, header, "split_column", data.split_column, ())
    taken = {image_col, group_col, split_col}
    one_hot = _one_hot_columns(table, header, records, data, taken)
    label_col = None
    if one_hot is None:
        label_col = _column(table, header, "label_column", data.label_column, LABEL_COLUMNS)
        if label_col is None:
            raise DataError(
                f"data.labels: {table} has no label column (looked for "
                f"{', '.join(LABEL_COLUMNS)}, or one-hot 0/1 columns; columns: "
                f"{', '.join(header)}); name it with data.label_column or data.label_columns"
            )
    rows: list[Row] = []
    seen: dict[str, int] = {}
    for line, record in records:
        where = f"data.labels: {table}, line {line}"
        image_id = record[image_col]
        if not image_id:
            raise DataError(f"{where}: the image column {image_col!r} is empty")
        if image_id in seen:
            raise DataError(
                f"{where}: image {image_id!r} is listed twice (first on line {seen[image_id]}); "
                "keep one row per image"
            )
        seen[image_id] = line
        label = _one_hot_label(where, record, one_hot) if one_hot else record[label_col or ""]
        if not label:
            raise DataError(f"{where}: the label column {label_col!r} is empty for {image_id!r}")
        if data.class_map is not None and label in data.class_map:
            mapped = data.class_map[label]
            if mapped is None:
                continue  # data.class_map: {label: null} leaves the label's images out
            label = mapped
        group = record[group_col] if group_col else None
        if group_col and not group:
            raise DataError(f"{where}: the group column {group_col!r} is empty for {image_id!r}")
        split = None
        if split_col:
            split = SPLIT_NAMES.get(record[split_col].lower())
            if split is None:
                raise DataError(
                    f"{where}: split {record[split_col]!r} in column {split_col!r} is not one of "
                    "train, val (valid, validation) or test"
                )
        rows.append(Row(line, image_id, label, group, split))
    if not rows:
        raise DataError(f"data.class_map: leaves no row of {table}")
    return rows


def _one_hot_columns(
    table: Path,
    header: list[str],
    records: list[tuple[int, dict[str, str]]],
    data: DataSpec,
    taken: set[str | None],
) -> list[str] | None:
    """The one-hot label columns: named, or detected (two or more 0/1 columns, no label
    column named); a detected column without a single 1 (ISIC 2019's UNK) is left out."""
    if data.label_columns is not None:
        for column in data.label_columns:
            _column(table, header, "label_columns", column, ())
        return list(data.label_columns)
    if data.label_column is not None or any(c in header for c in LABEL_COLUMNS):
        return None
    candidates = [
        c for c in header if c not in taken and all(r[c] in ONE_HOT_VALUES for _, r in records)
    ]
    used = [c for c in candidates if any(float(r[c]) == 1.0 for _, r in records)]
    return used if len(candidates) >= 2 else None


def _one_hot_label(where: str, record: dict[str, str], columns: list[str]) -> str:
    ones = []
    for c in columns:
        value = record[c]
        if value not in ONE_HOT_VALUES:
            raise DataError(f"{where}: one-hot column {c!r} holds {value!r}, not 0 or 1")
        if float(value) == 1.0:
            ones.append(c)
    if len(ones) != 1:
        found = "no 1" if not ones else f"{len(ones)} ones ({', '.join(ones)})"
        raise DataError(
            f"{where}: the one-hot columns ({', '.join(columns)}) hold {found}; each row needs "
            "exactly one"
        )
    return ones[0]


def _class_names(table: Path, rows: list[Row], classes: list[str] | None) -> list[str]:
    present = Counter(r.label for r in rows)
    if classes is None:
        names = sorted(present)
    else:
        outside = next((r for r in rows if r.label not in classes), None)
        if outside is not None:
            raise DataError(
                f"data.labels: {table}, line {outside.line}: label {outside.label!r} is not in "
                f"data.classes ({', '.join(classes)}); add it, merge it with data.class_map, or "
                "leave its images out with data.class_map: {" + outside.label + ": null}"
            )
        empty = [c for c in classes if c not in present]
        if empty:
            raise DataError(
                f"data.classes: class {empty[0]!r} has no image in {table} (remove it from "
                "data.classes)"
            )
        names = list(classes)
    if len(names) < 2:
        raise DataError(
            f"data.labels: {table} has one class ({names[0]}); a classifier needs two or more"
        )
    return names


def _resolve(table: Path, images: Path, rows: list[Row]) -> dict[int, Path]:
    """Each row's image file: by relative path or file name, or by name without extension."""
    found = [
        p
        for p in sorted(images.rglob("*"))
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(images).parts)
        and p.is_file()
    ]
    by_path = {p.relative_to(images).as_posix(): p for p in found}
    by_name: dict[str, list[Path]] = defaultdict(list)
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for p in found:
        by_name[p.name].append(p)
        by_stem[p.stem].append(p)
    files, missing = {}, []
    for row in rows:
        key = row.image_id.replace("\\", "/")
        if key in by_path:
            files[row.line] = by_path[key]
            continue
        matches = (
            by_name.get(Path(key).name)
            if Path(key).suffix.lower() in IMAGE_SUFFIXES
            else by_stem.get(key)
        )
        if not matches:
            missing.append(row)
        elif len(matches) > 1:
            names = ", ".join(str(m.relative_to(images)) for m in matches[:SHOWN])
            raise DataError(
                f"data.labels: {table}, line {row.line}: image {row.image_id!r} matches "
                f"{len(matches)} files under {images} ({names}); give its path in the table"
            )
        else:
            files[row.line] = matches[0]
    if missing:
        ids = ", ".join(r.image_id for r in missing[:SHOWN]) + (
            ", ..." if len(missing) > SHOWN else ""
        )
        raise DataError(
            f"data.labels: {table}: {len(missing)} of {len(rows)} rows name images not found "
            f"under {images} (line {missing[0].line}: {ids}); check data.images"
        )
    return files
