"""Per-image augmentations built from a trial's probabilities (albumentations, on the CPU)."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

from skinsearch.config.hparams import HParams


def build_augment(hp: HParams, seed: int) -> A.Compose | None:
    """The trial's augmentation pipeline, or None when every probability is zero.

    ``hflip``/``vflip`` flip, ``rotate90`` rotates by 0, 90, 180 or 270 degrees (each a quarter
    of the time; a lesion has no up, and with both flips this draws every one of its 8
    orientations alike), ``rbcontrast`` shifts brightness and contrast by up to 20%, and
    ``affine`` shifts by up to 6.25%, scales by 0.9-1.1 and rotates by up to 45 degrees (the
    ranges of albumentations' ShiftScaleRotate), reflecting at the border; ``colour`` jitters
    hue by up to 0.05, saturation by 20% and brightness and contrast by 10%.
    """
    transforms: list[A.BasicTransform] = []
    if hp.hflip > 0:
        transforms.append(A.HorizontalFlip(p=hp.hflip))
    if hp.vflip > 0:
        transforms.append(A.VerticalFlip(p=hp.vflip))
    if hp.rotate90 > 0:
        transforms.append(A.RandomRotate90(p=hp.rotate90))
    if hp.affine > 0:
        transforms.append(
            A.Affine(
                translate_percent=(-0.0625, 0.0625),
                scale=(0.9, 1.1),
                rotate=(-45, 45),
                border_mode=cv2.BORDER_REFLECT_101,
                p=hp.affine,
            )
        )
    if hp.colour > 0:
        transforms.append(
            A.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.2, hue=0.05, p=hp.colour)
        )
    if hp.rbcontrast > 0:
        transforms.append(
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=hp.rbcontrast)
        )
    return A.Compose(transforms, seed=seed) if transforms else None


def augment_batch(pipeline: A.Compose | None, images: np.ndarray) -> np.ndarray:
    """Apply ``pipeline`` to each ``(H, W, 3)`` uint8 image of a batch."""
    if pipeline is None:
        return images
    return np.stack([pipeline(image=img)["image"] for img in images])
