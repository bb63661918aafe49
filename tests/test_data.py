"""Folder data sets: image modes, EXIF, corrupt files, split rules, the built-in set."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinsearch.data import decode_dataset, load_image, scan_dataset
from skinsearch.data.synthetic import CLASSES, synthetic_root
from skinsearch.errors import DataError
from tests.conftest import write_image_folder


def red_left_half(size: tuple[int, int] = (40, 30)) -> Image.Image:
    img = Image.new("RGB", size, (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    return img


@pytest.mark.parametrize(
    ("mode", "suffix"),
    [
        ("RGB", ".jpg"),
        ("RGB", ".bmp"),
        ("RGB", ".webp"),
        ("RGBA", ".png"),
        ("L", ".png"),
        ("P", ".png"),
        ("I;16", ".png"),
        ("CMYK", ".jpg"),
        ("LA", ".png"),
    ],
)
def test_every_image_mode_becomes_rgb(tmp_path: Path, mode: str, suffix: str) -> None:
    path = tmp_path / f"img{suffix}"
    red_left_half().convert(mode).save(path)
    (arr,) = load_image(path, [16])
    assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display after rotating 90 degrees clockwise
    red_left_half((40, 20)).save(path, exif=exif, quality=95)
    (upright,) = load_image(path, [20])
    # after the rotation the red half is on top
    assert upright[2, 10, 0] > 200 and upright[-3, 10, 2] > 200


def test_corrupt_files_are_skipped_with_one_warning(tiny_images: Path, tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "d", ["blue_grey", "small_pink"], train=4, val=2)
    for i in range(4):
        (root / "train" / "blue_grey" / f"broken{i}.jpg").write_bytes(b"not a jpeg at all")
    files = scan_dataset(root)
    with pytest.warns(
        UserWarning, match=r"skipped 4 unreadable image\(s\): .*broken0.jpg.*, \.\.\."
    ) as caught:
        data = decode_dataset(files, [16, 24])
    assert len(caught) == 1
    assert data[16].x_train.shape == (8, 16, 16, 3)
    assert data[24].x_val.shape == (4, 24, 24, 3)
    assert data[16].class_names == ["blue_grey", "small_pink"]


def test_a_class_with_only_corrupt_files_is_an_error(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "d", ["blue_grey", "small_pink"], train=3, val=1)
    for f in (root / "train" / "small_pink").iterdir():
        f.write_bytes(b"junk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="class 'small_pink' has no readable train image"):
            decode_dataset(scan_dataset(root), [16])


def test_every_image_corrupt_is_an_error(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
            (tmp_path / split / name / "x.png").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"none of the 4 images .* could be read"):
        decode_dataset(scan_dataset(tmp_path), [16])


def test_class_folder_without_images_is_an_error(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "d", ["blue_grey"], train=2, val=1)
    (root / "train" / "empty_class").mkdir()
    with pytest.raises(DataError, match=r"class folder .*empty_class has no images \(\.jpg"):
        scan_dataset(root)


def test_val_class_missing_from_train_is_an_error(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "d", ["blue_grey", "small_pink"], train=2, val=1)
    write_image_folder(tmp_path / "d", ["two_tone"], train=0, val=1)
    import shutil

    shutil.rmtree(root / "train" / "two_tone")
    with pytest.raises(DataError, match="has classes that train/ lacks: two_tone"):
        scan_dataset(root)


def test_missing_and_empty_folders_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.path: .*nowhere is not a folder"):
        scan_dataset(tmp_path / "nowhere")
    with pytest.raises(DataError, match="has no class folders"):
        scan_dataset(tmp_path)


def test_single_folder_gets_a_seeded_stratified_split(tmp_path: Path) -> None:
    for name, count in (("a", 10), ("b", 5)):
        (tmp_path / name).mkdir()
        for i in range(count):
            red_left_half().save(tmp_path / name / f"{i}.png")
    first = scan_dataset(tmp_path, val_fraction=0.2, seed=3)
    assert [y for _, y in first.val].count(0) == 2 and [y for _, y in first.val].count(1) == 1
    assert first.val == scan_dataset(tmp_path, val_fraction=0.2, seed=3).val
    assert first.val != scan_dataset(tmp_path, val_fraction=0.2, seed=4).val
    assert not {f for f, _ in first.train} & {f for f, _ in first.val}
    with pytest.raises(DataError, match=r"data.val_fraction: .* has its own val/ folder"):
        scan_dataset(write_image_folder(tmp_path / "tv", ["blue_grey"], 2, 1), val_fraction=0.2)


def test_builtin_set_is_deterministic_and_complete(tmp_path: Path) -> None:
    root = synthetic_root(tmp_path / "one")
    again = synthetic_root(tmp_path / "two")
    files = scan_dataset(root)
    assert files.class_names == sorted(CLASSES)
    assert len(files.class_names) == 9
    first = sorted((root / "train" / "two_tone").iterdir())[0]
    twin = again / "train" / "two_tone" / first.name
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(twin)))


def test_channel_statistics_are_the_train_sets(tiny_images: Path) -> None:
    data = decode_dataset(scan_dataset(tiny_images), [20])[20]
    x = data.x_train.reshape(-1, 3) / 255.0
    assert data.mean == pytest.approx(x.mean(0), abs=1e-5)
    assert data.std == pytest.approx(x.std(0), abs=1e-5)


def test_each_file_is_decoded_once_for_every_size(tiny_images: Path) -> None:
    from skinsearch.data.decode import decode_count

    files = scan_dataset(tiny_images)
    before = decode_count()
    data = decode_dataset(files, [16, 24, 32])
    assert decode_count() - before == len(files.train) + len(files.val)
    assert data[32].nbytes == (len(files.train) + len(files.val)) * 32 * 32 * 3


def test_fold_splits_are_stratified_and_cover_every_image_once(tiny_images: Path) -> None:
    from skinsearch.data.decode import fold_splits

    whole = decode_dataset(scan_dataset(tiny_images), [16])[16]
    total = len(whole.y_train) + len(whole.y_val)
    folds = fold_splits(whole, 4, seed=0)
    assert len(folds) == 4
    seen = np.concatenate([f.x_val for f in folds])
    assert len(seen) == total  # every image validated on exactly once
    assert len(np.unique(seen.reshape(total, -1), axis=0)) == total
    for f in folds:
        assert len(f.y_train) + len(f.y_val) == total
        assert set(np.bincount(f.y_val)) <= {7, 8}  # 32 images per class, 4 folds
        assert f.mean and f.std
    with pytest.raises(DataError, match=r"--folds 40: class '\w+' has 32 images"):
        fold_splits(whole, 40, seed=0)
