"""Augmentations of a whole batch at once, in torch, on the device the batch is on.

The GPU path of training keeps the decoded data set on the GPU as uint8 and augments each batch
there, so that no image goes back to the CPU. The transforms, their probabilities and their
ranges are those of ``augment.build_augment`` (albumentations, the CPU path); each image draws
its own parameters. ``tests/test_batch_augment.py`` checks the ranges against albumentations'.

Differences from the CPU path, all within the same ranges: the affine border reflects including
the edge pixel (grid_sample's ``reflection``; albumentations uses BORDER_REFLECT_101), and the
colour jitter applies its four adjustments in one random order per batch rather than per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from skinsearch._registry import Registry
from skinsearch.config.hparams import HParams

# The ranges of augment.build_augment.
AFFINE_TRANSLATE = 0.0625  # fraction of the side, each axis
AFFINE_SCALE = (0.9, 1.1)  # each axis on its own, as albumentations' Affine (keep_ratio=False)
AFFINE_ROTATE = 45.0  # degrees
JITTER_BRIGHTNESS, JITTER_CONTRAST, JITTER_SATURATION, JITTER_HUE = 0.1, 0.1, 0.2, 0.05
RB_BRIGHTNESS, RB_CONTRAST = 0.2, 0.2
GREY = (0.299, 0.587, 0.114)  # RGB -> luma, as OpenCV's RGB2GRAY


class BatchAugment:
    """A trial's augmentations for ``(N, 3, H, W)`` float batches in [0, 1].

    Args:
        hp: The trial's probabilities (``hflip``, ``vflip``, ``rotate90``, ``affine``, ``colour``,
            ``rbcontrast``).
    """

    def __init__(self, hp: HParams) -> None:
        self.hp = hp

    @staticmethod
    def wanted(hp: HParams) -> bool:
        """Whether ``hp`` asks for any augmentation."""
        return any(getattr(hp, name) > 0 for name in BATCH_AUGMENTATIONS)

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The augmented batch (a new tensor), with randomness from ``generator`` (on the
        batch's device)."""
        for name, transform in BATCH_AUGMENTATIONS.items():
            p = getattr(self.hp, name)
            if p > 0:
                batch = transform(batch, _chosen(batch, p, generator), generator)
        return batch


def rotate90(batch: torch.Tensor, chosen: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rotate each of the ``chosen`` (square) images by 0, 90, 180 or 270 degrees, one of the
    four drawn uniformly (a quarter of the chosen stay as they are, as albumentations'
    RandomRotate90), counterclockwise as ``np.rot90``."""
    turns = torch.randint(4, (batch.shape[0],), device=batch.device, generator=generator)
    turns = torch.where(chosen, turns, 0)
    out = batch
    for k in (1, 2, 3):
        out = _where(turns == k, torch.rot90(batch, k, dims=(2, 3)), out)
    return out


def affine(batch: torch.Tensor, chosen: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift, scale (each axis) and rotate the ``chosen`` images about their centre, bilinear,
    reflecting at the border."""
    n, _, h, w = batch.shape
    # whole pixels, truncated towards zero, as albumentations' Affine does
    tx, ty = (
        torch.trunc(_uniform(n, -AFFINE_TRANSLATE, AFFINE_TRANSLATE, batch, generator) * side)
        / side
        for side in (w, h)
    )
    sx, sy = (_uniform(n, *AFFINE_SCALE, batch, generator) for _ in "xy")
    angle = _uniform(n, -AFFINE_ROTATE, AFFINE_ROTATE, batch, generator) * (math.pi / 180)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # forward map in pixel units about the centre: x' = R S x + t; grid_sample wants, for each
    # output pixel, where to read the input: x = (R S)^-1 (x' - t), in [-1, 1] coordinates
    # (x_norm = x_px * 2 / w), so the y/x aspect enters the rotation's off-diagonal terms.
    inv = torch.stack(
        [
            torch.stack([cos / sx, sin * h / (w * sx)], 1),
            torch.stack([-sin * w / (h * sy), cos / sy], 1),
        ],
        1,
    )
    shift = torch.stack([tx * 2, ty * 2], 1).unsqueeze(2)  # the shift in [-1, 1] units
    theta = torch.cat([inv, -inv @ shift], 2)
    identity = torch.eye(2, 3, device=batch.device, dtype=batch.dtype).expand(n, 2, 3)
    theta = torch.where(chosen.view(n, 1, 1), theta, identity)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    out = F.grid_sample(
        batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    return _where(chosen, out, batch)


def colour_jitter(
    batch: torch.Tensor, chosen: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """albumentations' ColorJitter(brightness=0.1, contrast=0.1, saturation=0.2, hue=0.05) on
    the ``chosen`` images."""
    n = batch.shape[0]
    factors = {
        "brightness": _uniform(n, 1 - JITTER_BRIGHTNESS, 1 + JITTER_BRIGHTNESS, batch, generator),
        "contrast": _uniform(n, 1 - JITTER_CONTRAST, 1 + JITTER_CONTRAST, batch, generator),
        "saturation": _uniform(n, 1 - JITTER_SATURATION, 1 + JITTER_SATURATION, batch, generator),
        "hue": _uniform(n, -JITTER_HUE, JITTER_HUE, batch, generator),
    }
    order = torch.randperm(4, generator=generator, device=batch.device).tolist()
    out = batch
    for step in order:
        name = ("brightness", "contrast", "saturation", "hue")[step]
        f = factors[name].view(n, 1, 1, 1)
        if name == "brightness":
            out = out * f
        elif name == "contrast":
            mean = grey(out).mean(dim=(1, 2, 3), keepdim=True)
            out = out * f + mean * (1 - f)
        elif name == "saturation":
            out = out * f + grey(out) * (1 - f)
        else:
            out = shift_hue(out, f)
        out = out.clamp(0.0, 1.0)
    return _where(chosen, out, batch)


def brightness_contrast(
    batch: torch.Tensor, chosen: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """albumentations' RandomBrightnessContrast(0.2, 0.2) on the ``chosen`` images: each pixel
    times 1 + U(-0.2, 0.2), plus U(-0.2, 0.2) of the maximum value, clipped."""
    n = batch.shape[0]
    alpha = 1 + _uniform(n, -RB_CONTRAST, RB_CONTRAST, batch, generator)
    beta = _uniform(n, -RB_BRIGHTNESS, RB_BRIGHTNESS, batch, generator)
    out = (batch * alpha.view(n, 1, 1, 1) + beta.view(n, 1, 1, 1)).clamp(0.0, 1.0)
    return _where(chosen, out, batch)


def grey(batch: torch.Tensor) -> torch.Tensor:
    """The ``(N, 1, H, W)`` luma of RGB batches."""
    weights = torch.tensor(GREY, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
    return (batch * weights).sum(1, keepdim=True)


def shift_hue(batch: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of RGB batches by ``shift`` turns (``(N, 1, 1, 1)``), through HSV."""
    r, g, b = batch.unbind(1)
    top, _ = batch.max(1)
    bottom, _ = batch.min(1)
    span = top - bottom
    safe = torch.where(span > 0, span, torch.ones_like(span))
    hue = torch.where(
        top == r,
        ((g - b) / safe) % 6,
        torch.where(top == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    hue = torch.where(span > 0, hue / 6, torch.zeros_like(hue))
    hue = (hue + shift.view(-1, 1, 1)) % 1.0
    saturation = torch.where(top > 0, span / torch.where(top > 0, top, 1.0), 0.0)
    # HSV -> RGB
    k = torch.stack([(5 + hue * 6) % 6, (3 + hue * 6) % 6, (1 + hue * 6) % 6], 1)
    ramp = torch.clamp(torch.minimum(k, 4 - k), 0.0, 1.0)
    return top.unsqueeze(1) * (1 - saturation.unsqueeze(1) * ramp)


def _chosen(batch: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    # which images of the batch get the transform, each with probability p
    return torch.rand(batch.shape[0], device=batch.device, generator=generator) < p


def _uniform(
    n: int, low: float, high: float, like: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    u = torch.rand(n, device=like.device, generator=generator, dtype=like.dtype)
    return low + (high - low) * u


def _where(chosen: torch.Tensor, changed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    return torch.where(chosen.view(-1, 1, 1, 1), changed, original)


# -- the table: hyperparameter -> transform, in augment.AUGMENTATIONS' order ----------------------

BatchTransform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
BATCH_AUGMENTATIONS: Registry[BatchTransform] = Registry("batch augmentation")
BATCH_AUGMENTATIONS.register("hflip")(lambda batch, chosen, _: _where(chosen, batch.flip(3), batch))
BATCH_AUGMENTATIONS.register("vflip")(lambda batch, chosen, _: _where(chosen, batch.flip(2), batch))
BATCH_AUGMENTATIONS.register("rotate90")(rotate90)
BATCH_AUGMENTATIONS.register("affine")(affine)
BATCH_AUGMENTATIONS.register("colour")(colour_jitter)
BATCH_AUGMENTATIONS.register("rbcontrast")(brightness_contrast)
