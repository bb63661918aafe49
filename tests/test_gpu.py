"""The training loop on a CUDA device gives what the CPU path gives (skipped without a GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from skinsearch.config.hparams import HParams
from skinsearch.config.spec import TrainSpec
from skinsearch.data import decode_dataset, scan_dataset
from skinsearch.training.trainer import Trainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_a_cuda_epoch_matches_the_cpu_epoch(model: str, tiny_images: Path) -> None:
    data = decode_dataset(scan_dataset(tiny_images), [24])[24]
    # no augmentation: the GPU path's batch augmentation draws from CUDA's random stream
    hp = HParams(input_size=24, channels=[8, 16], hidden_sizes=[32], seed=1)
    results = {}
    for device in ("cpu", "cuda"):
        trainer = Trainer(model, hp, TrainSpec(max_epochs=1), data, device)
        results[device] = trainer.fit_epoch().metrics
        assert next(trainer.model.parameters()).device.type == device
        assert trainer.resident == (device == "cuda")
    assert results["cuda"]["train_loss"] == pytest.approx(results["cpu"]["train_loss"], rel=1e-3)
    assert results["cuda"]["val_loss"] == pytest.approx(results["cpu"]["val_loss"], rel=1e-2)


def test_on_a_gpu_the_data_stays_there_and_batches_are_augmented_there(tiny_images: Path) -> None:
    data = decode_dataset(scan_dataset(tiny_images), [24])[24]
    hp = HParams(input_size=24, hidden_sizes=[32], hflip=0.5, affine=0.5, colour=0.5, seed=1)
    trainer = Trainer("mlp", hp, TrainSpec(max_epochs=2), data, "cuda")
    assert trainer.x_train.device.type == "cuda" and trainer.x_train.dtype == torch.uint8
    assert trainer.augment is None and trainer.batch_augment is not None
    metrics = [trainer.fit_epoch().metrics for _ in range(2)]
    assert all(0.0 <= m["val_acc"] <= 1.0 for m in metrics)
