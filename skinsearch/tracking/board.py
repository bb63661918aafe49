"""TensorBoard events for one trial, written from inside the trial (no Ray, no MLflow here)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from skinsearch.store.storage import is_uri, upload
from skinsearch.tracking.client import finite
from skinsearch.training.plots import confusion_image

HISTOGRAM_BINS = 64


class TrialBoard:
    """TensorBoard events for one trial: scalars every epoch; the first epoch's inputs and
    weights; at every improvement the classification report, the confusion matrix as a table
    and as a heatmap image (drawn in NumPy: a Matplotlib figure cost more than a small model's
    epoch)."""

    def __init__(self, logdir: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # A URI (object-store storage) is written in a local folder and uploaded by ``sync``.
        self.uri = logdir if is_uri(logdir) else None
        local = tempfile.mkdtemp(prefix="skinsearch-tb-") if self.uri else logdir
        # flushed every few seconds and at close, not every epoch (small models' epochs are short)
        self.writer = SummaryWriter(local, flush_secs=5)

    def log_epoch(
        self,
        epoch: int,
        metrics: dict[str, float],
        improved: bool,
        evaluation: Any,
        model: Any = None,
        val_images: np.ndarray | None = None,
    ) -> None:
        """Write one epoch. ``model`` and ``val_images`` are logged when given (first epoch)."""
        for key, value in metrics.items():
            if key != "epoch" and finite(value):
                self.writer.add_scalar(key, value, epoch)
        if val_images is not None:
            self.writer.add_images("val/first_batch", val_images, epoch, dataformats="NHWC")
        if model is not None:
            for name, param in histogram_names(model):
                # 64 even bins: TensorBoard's default exponential buckets took 5x longer
                self.writer.add_histogram(
                    f"weights/{name}", param.detach().cpu(), epoch, bins=HISTOGRAM_BINS
                )
        if improved:
            text = "    " + evaluation.report_text().replace("\n", "\n    ")  # markdown code block
            self.writer.add_text("classification_report", text, epoch)
            self.writer.add_text("confusion_matrix_table", _markdown_confusion(evaluation), epoch)
            self.writer.add_image(
                "confusion_matrix", confusion_image(evaluation.confusion), epoch, dataformats="HWC"
            )

    def sync(self) -> None:
        """Upload the events written so far, for a URI log folder (checkpoints call this, so a
        lost node loses no more of them than of its checkpoints)."""
        if self.uri is not None:
            self.writer.flush()
            upload(Path(self.writer.log_dir), self.uri)

    def close(self) -> None:
        """Flush and close the event file (and upload it, for a URI)."""
        self.writer.close()
        if self.uri is not None:
            upload(Path(self.writer.log_dir), self.uri)
            shutil.rmtree(self.writer.log_dir, ignore_errors=True)


def _markdown_confusion(evaluation: Any) -> str:
    names = evaluation.class_names
    head = "| true \\ predicted | " + " | ".join(names) + " |"
    rule = "|---" * (len(names) + 1) + "|"
    rows = [
        f"| {name} | " + " | ".join(str(c) for c in row) + " |"
        for name, row in zip(names, evaluation.confusion, strict=True)
    ]
    return "\n".join([head, rule, *rows])


def histogram_names(model: Any) -> list[tuple[str, Any]]:
    """Each parameter with a name that says which layer holds it: ``10_Linear.bias`` rather
    than a bare ``10.bias`` (a ``Sequential``'s index alone)."""
    named = []
    for path, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            where = f"{path}_{type(module).__name__}" if path else type(module).__name__
            named.append((f"{where}.{name}", param))
    return named
