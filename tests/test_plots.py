"""Figures: the confusion heatmap written to TensorBoard at every improvement."""

from __future__ import annotations

import numpy as np

from skinsearch.training.plots import confusion_image


def test_confusion_image_shades_cells_by_row_rate() -> None:
    image = confusion_image([[10, 0], [0, 0]], cell=10)
    assert image.shape == (20, 20, 3) and image.dtype == np.uint8
    perfect, never, empty = image[5, 5], image[5, 15], image[15, 15]
    # viridis: high rates are bright yellow, zero is dark purple; an empty row reads as zero
    assert perfect.sum() > never.sum() and (never == empty).all()
    assert (image[0, :] == 255).all() and (image[:, 10] == 255).all()  # grid lines
