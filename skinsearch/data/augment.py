"""Per-image augmentations built from a trial's probabilities (albumentations, on the CPU)."""

from __future__ import annotations

from collections.abc import Callable

import albumentations as A
import cv2
import numpy as np

from skinsearch._registry import Registry
from skinsearch.config.hparams import HParams

#: hyperparameter (the probability of the transform) -> its albumentations transform, in the
#: order they apply; ``batch_augment.BATCH_AUGMENTATIONS`` has the same names in the same order
AUGMENTATIONS: Registry[Callable[[float], A.BasicTransform]] = Registry("augmentation")


@AUGMENTATIONS.register("hflip")
def _hflip(p: float) -> A.BasicTransform:
    return A.HorizontalFlip(p=p)


@AUGMENTATIONS.register("vflip")
def _vflip(p: float) -> A.BasicTransform:
    return A.VerticalFlip(p=p)


@AUGMENTATIONS.register("rotate90")
def _rotate90(p: float) -> A.BasicTransform:
    return A.RandomRotate90(p=p)


@AUGMENTATIONS.register("affine")
def _affine(p: float) -> A.BasicTransform:
    return A.Affine(
        translate_percent=(-0.0625, 0.0625),
        scale=(0.9, 1.1),
        rotate=(-45, 45),
        border_mode=cv2.BORDER_REFLECT_101,
        p=p,
    )


@AUGMENTATIONS.register("colour")
def _colour(p: float) -> A.BasicTransform:
    return A.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.2, hue=0.05, p=p)


@AUGMENTATIONS.register("rbcontrast")
def _rbcontrast(p: float) -> A.BasicTransform:
    return A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=p)


def build_augment(hp: HParams, seed: int) -> A.Compose | None:
    """The trial's augmentation pipeline, or None when every probability is zero.

    ``hflip``/``vflip`` flip, ``rotate90`` rotates by 0, 90, 180 or 270 degrees (each a quarter
    of the time; a lesion has no up, and with both flips this draws every one of its 8
    orientations alike), ``rbcontrast`` shifts brightness and contrast by up to 20%, and
    ``affine`` shifts by up to 6.25%, scales by 0.9-1.1 and rotates by up to 45 degrees (the
    ranges of albumentations' ShiftScaleRotate), reflecting at the border; ``colour`` jitters
    hue by up to 0.05, saturation by 20% and brightness and contrast by 10%.
    """
    transforms = [
        make(getattr(hp, name)) for name, make in AUGMENTATIONS.items() if getattr(hp, name) > 0
    ]
    return A.Compose(transforms, seed=seed) if transforms else None


def augment_batch(pipeline: A.Compose | None, images: np.ndarray) -> np.ndarray:
    """Apply ``pipeline`` to each ``(H, W, 3)`` uint8 image of a batch."""
    if pipeline is None:
        return images
    return np.stack([pipeline(image=img)["image"] for img in images])
