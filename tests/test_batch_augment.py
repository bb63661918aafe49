"""The GPU path's batch augmentations (run here on the CPU), against albumentations' ranges.

Each test draws the same transform many times on both sides and compares the distributions of
what it did (quantiles), since the two draw different random numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skinsearch.config.hparams import HParams
from skinsearch.data.augment import augment_batch, build_augment
from skinsearch.data.batch_augment import BatchAugment

N = 1500  # draws per side
QUANTILES = [0.02, 0.25, 0.5, 0.75, 0.98]


def both_sides(hp: HParams, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``images`` (uint8 NHWC) augmented by albumentations and by BatchAugment, as float
    NHWC arrays in 0..255."""
    cpu = augment_batch(build_augment(hp, seed=1), images).astype(np.float64)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255.0
    out = BatchAugment(hp)(batch, torch.Generator().manual_seed(1))
    return cpu, out.permute(0, 2, 3, 1).numpy() * 255.0


def flat_images(colour: tuple[int, int, int], size: int = 16) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (N, size, size, 3)).copy()


def assert_same_spread(a: np.ndarray, b: np.ndarray, tolerance: float) -> None:
    qa, qb = np.quantile(a, QUANTILES), np.quantile(b, QUANTILES)
    assert np.allclose(qa, qb, atol=tolerance), f"albumentations {qa} vs batch {qb}"


def test_no_probability_means_no_augmentation() -> None:
    assert not BatchAugment.wanted(HParams())
    assert BatchAugment.wanted(HParams(colour=0.1))
    assert BatchAugment.wanted(HParams(rotate90=0.1))


def test_certain_flips_flip_and_probable_ones_flip_that_often() -> None:
    images = np.random.default_rng(0).integers(0, 255, (N, 8, 8, 3), dtype=np.uint8)
    _, flipped = both_sides(HParams(hflip=1.0, vflip=1.0), images)
    assert np.allclose(flipped, images[:, ::-1, ::-1], atol=1e-9)
    _, half = both_sides(HParams(hflip=0.5), images)
    changed = np.abs(half - images).reshape(N, -1).max(1) > 0
    assert 0.45 < changed.mean() < 0.55


def test_rotate90_turns_each_image_a_quarter_of_the_time_on_both_sides() -> None:
    images = np.random.default_rng(0).integers(0, 255, (N, 8, 8, 3), dtype=np.uint8)
    turned = [np.rot90(images, k, axes=(1, 2)) for k in range(4)]
    for side in both_sides(HParams(rotate90=1.0), images):
        # each image is one of its four turns (counterclockwise as np.rot90), each about as often
        which = np.stack([np.abs(side - t).reshape(N, -1).max(1) < 1e-6 for t in turned], 1)
        assert (which.sum(1) == 1).all()
        assert np.allclose(which.mean(0), 0.25, atol=0.04), which.mean(0)


def test_brightness_contrast_spreads_as_albumentations() -> None:
    cpu, batch = both_sides(HParams(rbcontrast=1.0), flat_images((128, 128, 128)))
    # each image stays flat: 128 * (1 + U(-0.2, 0.2)) + 255 * U(-0.2, 0.2)
    assert_same_spread(cpu[:, 0, 0, 0], batch[:, 0, 0, 0], tolerance=4.0)
    assert batch.min() >= 128 * 0.8 - 51 - 1e-6 and batch.max() <= 128 * 1.2 + 51 + 1e-6


def test_colour_jitter_spreads_as_albumentations() -> None:
    skin = flat_images((190, 130, 110))
    cpu, batch = both_sides(HParams(colour=1.0), skin)
    for channel in range(3):
        assert_same_spread(cpu[:, 0, 0, channel], batch[:, 0, 0, channel], tolerance=4.0)


def test_hue_shift_is_a_turn_of_the_colour_wheel() -> None:
    from skinsearch.data.batch_augment import shift_hue

    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    third = shift_hue(red, torch.tensor([1 / 3]).view(1, 1, 1, 1))
    assert torch.allclose(third.flatten(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    colours = torch.rand(50, 3, 4, 4)
    assert torch.allclose(shift_hue(colours, torch.zeros(50, 1, 1, 1)), colours, atol=1e-6)


def centroids(out: np.ndarray) -> np.ndarray:
    """The (x, y) centre of mass of each image's red channel."""
    weight = out[..., 0]
    ys, xs = np.mgrid[: out.shape[1], : out.shape[2]]
    total = weight.sum(axis=(1, 2))
    return np.stack(
        [(weight * xs).sum(axis=(1, 2)) / total, (weight * ys).sum(axis=(1, 2)) / total], 1
    )


def test_affine_shifts_and_scales_as_albumentations() -> None:
    images = np.zeros((N, 48, 48, 3), np.uint8)
    images[:, 20:28, 20:28] = 255  # a mark on the centre: only the shift moves it
    cpu, batch = both_sides(HParams(affine=1.0), images)
    for axis in range(2):
        assert_same_spread(centroids(cpu)[:, axis], centroids(batch)[:, axis], tolerance=0.3)
    # its area follows the two scales: 64 px * U(0.9, 1.1) * U(0.9, 1.1)
    area_cpu, area_batch = cpu[..., 0].sum(axis=(1, 2)) / 255, batch[..., 0].sum(axis=(1, 2)) / 255
    assert_same_spread(area_cpu, area_batch, tolerance=1.0)


def test_affine_rotates_as_albumentations() -> None:
    images = np.zeros((N, 48, 48, 3), np.uint8)
    images[:, 14:18, 28:32] = 255  # a mark off the centre: rotation moves it
    cpu, batch = both_sides(HParams(affine=1.0), images)
    angle_cpu, angle_batch = (
        np.degrees(np.arctan2(c[:, 1] - 23.5, c[:, 0] - 23.5))
        for c in (centroids(cpu), centroids(batch))
    )
    assert_same_spread(angle_cpu, angle_batch, tolerance=3.0)


@pytest.mark.parametrize("hp", [HParams(affine=0.5, colour=0.5, rbcontrast=0.5, hflip=0.5)])
def test_a_seeded_generator_repeats_itself(hp: HParams) -> None:
    batch = torch.rand(8, 3, 16, 16)
    first = BatchAugment(hp)(batch, torch.Generator().manual_seed(3))
    again = BatchAugment(hp)(batch, torch.Generator().manual_seed(3))
    other = BatchAugment(hp)(batch, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() >= 0.0 and first.max() <= 1.0
