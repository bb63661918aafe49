"""``builtin:synthetic``: a small, deterministic, 9-class set of lesion-like images.

Each class is a blob on skin-coloured background with its own colour, border irregularity,
texture and size; per-image jitter, blur and noise make neighbouring classes overlap, so the
task is learnable but not trivial. Generated once into a cache folder, then read like any folder
data set (``train/<class>/*.png``, ``val/<class>/*.png``).

``builtin:synthetic_table`` is the same kind of images as people download HAM10000: one
``metadata.csv`` (``lesion_id,image_id,dx``) over an ``images/`` folder, with 1 to 3 views of each
lesion (turned, flipped, re-noised) and no split, so that a search splits it itself and a split
by image would put views of one lesion on both sides (use ``group_column: lesion_id``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

VERSION = 1  # bump when the generator changes, so old caches are not reused
IMAGE_SIZE = 96
TRAIN_PER_CLASS = 70
VAL_PER_CLASS = 20
LESIONS_PER_CLASS = 36  # in the table form: 1, 2 or 3 views each, 72 images a class
TABLE_FILE = "metadata.csv"


@dataclass(frozen=True)
class _Look:
    color: tuple[int, int, int]  # lesion RGB
    irregularity: float  # 0 smooth ... 0.35 ragged border
    texture: str  # "plain", "dots" or "streaks"
    radius: float  # fraction of the half-width


CLASSES: dict[str, _Look] = {
    "plain_brown": _Look((120, 75, 50), 0.04, "plain", 0.45),
    "ragged_dark": _Look((70, 42, 30), 0.30, "plain", 0.55),
    "dotted_brown": _Look((125, 80, 55), 0.06, "dots", 0.48),
    "small_pink": _Look((200, 120, 120), 0.05, "plain", 0.28),
    "streaked_dark": _Look((80, 50, 38), 0.16, "streaks", 0.48),
    "blue_grey": _Look((105, 110, 135), 0.06, "plain", 0.36),
    "large_tan": _Look((170, 125, 90), 0.06, "plain", 0.68),
    "red_lacunae": _Look((170, 45, 55), 0.05, "dots", 0.32),
    "two_tone": _Look((85, 55, 40), 0.24, "patches", 0.60),
}


def synthetic_root(cache_dir: str | Path | None = None) -> Path:
    """The folder of the built-in set, generating it on first use.

    Args:
        cache_dir: Where to cache it; default ``$SKINSEARCH_CACHE`` or ``~/.cache/skinsearch``.
    """
    return _cached(f"synthetic-v{VERSION}", generate, cache_dir)


def synthetic_table(cache_dir: str | Path | None = None) -> Path:
    """The labels table of ``builtin:synthetic_table`` (its images beside it), generated on first
    use; ``cache_dir`` as for ``synthetic_root``."""
    return _cached(f"synthetic-table-v{VERSION}", generate_table, cache_dir) / TABLE_FILE


def _cached(name: str, write: Callable[[Path], None], cache_dir: str | Path | None) -> Path:
    # written in a temporary folder and renamed, so a half-written set is never read
    base = Path(
        cache_dir or os.environ.get("SKINSEARCH_CACHE") or Path.home() / ".cache" / "skinsearch"
    )
    root = base / name
    if (root / ".complete").exists():
        return root
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=base))
    try:
        write(staging)
        (staging / ".complete").touch()
        try:
            staging.rename(root)
        except OSError:  # another process finished first; its copy is identical
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root


def generate(root: Path) -> None:
    """Write the whole set under ``root`` (deterministic: same files on every machine)."""
    for label, (name, look) in enumerate(CLASSES.items()):
        for split, count, offset in (("train", TRAIN_PER_CLASS, 0), ("val", VAL_PER_CLASS, 10_000)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rng = np.random.default_rng([VERSION, label, offset + i])
                Image.fromarray(render(look, rng)).save(folder / f"{name}_{i:04d}.png")


def generate_table(root: Path) -> None:
    """Write ``metadata.csv`` and ``images/`` under ``root`` (deterministic, as ``generate``)."""
    rows = ["lesion_id,image_id,dx"]
    (root / "images").mkdir()
    for label, (name, look) in enumerate(CLASSES.items()):
        for lesion in range(LESIONS_PER_CLASS):
            rng = np.random.default_rng([VERSION, label, 20_000 + lesion])
            base = render(look, rng)
            for view in range(1 + lesion % 3):
                turned = np.rot90(base, view)
                image = turned[:, ::-1] if view == 2 else turned
                noisy = image + rng.normal(0, 6, image.shape)
                image_id = f"SYN_{label}{lesion:03d}{view}"
                Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(
                    root / "images" / f"{image_id}.png"
                )
                rows.append(f"LES_{name}_{lesion:03d},{image_id},{name}")
    (root / TABLE_FILE).write_text("\n".join(rows) + "\n")


def render(look: _Look, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """One ``(size, size, 3)`` uint8 image of a lesion with the given look."""
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    cx, cy = rng.uniform(-0.15, 0.15, 2)
    x, y = xx - cx, yy - cy
    theta, r = np.arctan2(y, x), np.hypot(x, y)

    wobble = sum(
        rng.uniform(0.3, 1.0) * np.sin(k * theta + rng.uniform(0, 2 * np.pi)) / k**0.5
        for k in range(2, 8)
    )
    radius = look.radius * rng.uniform(0.8, 1.2) * (1 + look.irregularity * wobble / 2.5)
    mask = 1 / (1 + np.exp((r - radius) / 0.03))

    # jitter is mostly brightness, a little hue: per-channel noise alone turns browns green
    skin = np.array([225, 185, 160]) * rng.normal(1, 0.05) + rng.normal(0, 4, 3)
    lesion = np.array(look.color) * rng.normal(1, 0.15) + rng.normal(0, 6, 3)
    shade = np.ones_like(r)
    if look.texture == "dots":
        for _ in range(int(rng.integers(6, 14))):
            px, py = rng.uniform(-0.7, 0.7, 2) * look.radius
            shade -= 0.45 * np.exp(-((x - px) ** 2 + (y - py) ** 2) / 0.004)
    elif look.texture == "streaks":
        angle = rng.uniform(0, np.pi)
        shade += 0.35 * np.sin(28 * (x * np.cos(angle) + y * np.sin(angle)))
    elif look.texture == "patches":
        px, py = rng.uniform(-0.3, 0.3, 2) * look.radius
        shade += 0.9 * np.exp(-((x - px) ** 2 + (y - py) ** 2) / (0.3 * look.radius) ** 2)
    lesion_px = lesion[None, None, :] * np.clip(shade, 0.3, 2.0)[..., None]

    img = skin[None, None, :] * (1 - mask[..., None]) + lesion_px * mask[..., None]
    img *= 1 + 0.12 * (xx[..., None] * rng.uniform(-1, 1))  # uneven lighting
    img += rng.normal(0, 10, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
