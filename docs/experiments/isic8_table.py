"""Write isic8_clean as people download such data: one labels table (``image_id,dx``) over all
its images, with no split, so that skinsearch makes the train/val/test split itself.

    python docs/experiments/isic8_table.py ../shared/data/isic8_clean isic8.csv

The table names each image by its id (the file name without extension); ``data.images`` points
skinsearch at the folder, which it searches recursively. isic8_clean records no lesion or patient
ids, so the split can be stratified by class but not grouped.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def main(folder: Path, out: Path) -> None:
    rows = sorted(
        (image.stem, image.parent.name)
        for image in folder.glob("*/*/*")
        if image.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )
    if out.exists():
        sys.exit(f"{out} exists; choose another file")
    with out.open("x", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "dx"])
        writer.writerows(rows)
    print(f"{len(rows)} images, {len({dx for _, dx in rows})} classes: {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
