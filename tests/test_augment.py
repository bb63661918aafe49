"""Augmentations: built from the trial's probabilities, valid for albumentations 2, seeded."""

from __future__ import annotations

import numpy as np

from skinsearch.config.hparams import HParams
from skinsearch.data.augment import augment_batch, build_augment


def images(n: int = 6) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)


def test_no_probability_means_no_pipeline() -> None:
    assert build_augment(HParams(), seed=0) is None
    batch = images()
    assert augment_batch(None, batch) is batch


def test_certain_flips_flip() -> None:
    batch = images()
    out = augment_batch(build_augment(HParams(hflip=1.0, vflip=1.0), seed=0), batch)
    assert np.array_equal(out, batch[:, ::-1, ::-1])


def test_every_transform_builds_without_argument_warnings() -> None:
    # pyproject turns albumentations' "not valid for transform" warnings into errors
    pipeline = build_augment(
        HParams(hflip=0.5, vflip=0.5, rotate90=0.5, rbcontrast=1.0, affine=1.0, colour=1.0),
        seed=1,
    )
    assert pipeline is not None
    out = augment_batch(pipeline, images())
    assert out.shape == (6, 16, 16, 3) and out.dtype == np.uint8
    assert not np.array_equal(out, images())


def test_pipelines_are_seeded() -> None:
    hp = HParams(hflip=0.5, rbcontrast=0.5, affine=0.5)
    first = augment_batch(build_augment(hp, seed=5), images())
    again = augment_batch(build_augment(hp, seed=5), images())
    assert np.array_equal(first, again)


def test_an_albumentations_1x_argument_fails_the_tests() -> None:
    # albumentations 2 only warns about arguments it ignores; pyproject makes that an error
    import albumentations as A
    import pytest

    with pytest.raises(UserWarning, match="not valid for transform Affine"):
        A.Affine(shift_limit=0.1, p=1.0)


def test_colour_jitter_changes_hue_and_saturation_but_not_geometry() -> None:
    pipeline = build_augment(HParams(colour=1.0), seed=3)
    batch = images()
    out = augment_batch(pipeline, batch)
    assert not np.array_equal(out, batch)
    # colour only: where the image is uniform it stays uniform
    flat = np.full((1, 16, 16, 3), (180, 90, 60), dtype=np.uint8)
    jittered = augment_batch(pipeline, flat)[0]
    assert (jittered == jittered[0, 0]).all() and not (jittered[0, 0] == (180, 90, 60)).all()
