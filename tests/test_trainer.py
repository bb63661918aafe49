"""The training loop without Ray: learning, early stopping, checkpoints that resume exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from skinsearch.config.hparams import HParams
from skinsearch.config.spec import TrainSpec
from skinsearch.data import DecodedData, decode_dataset, scan_dataset
from skinsearch.training.trainer import Trainer


@pytest.fixture(scope="module")
def data(tiny_images: Path) -> DecodedData:
    return decode_dataset(scan_dataset(tiny_images), [24])[24]


def test_a_trial_learns_the_tiny_set(data: DecodedData) -> None:
    trainer = Trainer(
        "cnn",
        HParams(input_size=24, channels=[8, 16], fc_size=32, lr=3e-3),
        TrainSpec(max_epochs=8),
        data,
        "cpu",
    )
    results = [trainer.fit_epoch() for _ in range(8)]
    assert results[-1].stop_reason == "max_epochs"
    assert max(r.metrics["val_acc"] for r in results) >= 0.8
    assert set(results[0].metrics) >= {
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "val_balanced_acc",
        "val_macro_f1",
        "val_auc",
        "val_recall_blue_grey",
    }


@pytest.mark.parametrize("averaged", [{}, {"ema": 0.9, "batchnorm": True}], ids=["plain", "ema"])
def test_resuming_from_a_checkpoint_continues_exactly(
    data: DecodedData, tmp_path: Path, averaged: dict[str, object]
) -> None:
    hp = HParams(
        input_size=24,
        hidden_sizes=[32],
        lr=1e-3,
        hflip=0.5,
        rbcontrast=0.5,
        affine=0.5,
        seed=3,
        **averaged,  # type: ignore[arg-type]
    )
    train = TrainSpec(max_epochs=4)
    straight = Trainer("mlp", hp, train, data, "cpu")
    expected = [straight.fit_epoch().metrics for _ in range(4)]

    first = Trainer("mlp", hp, train, data, "cpu")
    result = None
    for _ in range(2):
        result = first.fit_epoch()
    assert result is not None
    first.save(tmp_path, result)
    resumed = Trainer("mlp", hp, train, data, "cpu")
    resumed.load(tmp_path)
    rest = [resumed.fit_epoch().metrics for _ in range(2)]
    for got, want in zip(rest, expected[2:], strict=True):
        assert got == pytest.approx(want, rel=1e-5)


def test_patience_stops_a_trial_that_no_longer_improves(data: DecodedData) -> None:
    trainer = Trainer(
        "mlp",
        HParams(input_size=24, lr=1e-12),
        TrainSpec(max_epochs=50, patience=2, metric="val_acc"),
        data,
        "cpu",
    )
    reasons = []
    for _ in range(50):
        result = trainer.fit_epoch()
        reasons.append(result.stop_reason)
        if result.stop_reason:
            break
    assert reasons == [None, None, "early_stopped"]  # best at epoch 1, then 2 flat epochs
    assert trainer.bad_epochs == 2


def test_balanced_class_weights_follow_scikit_learn(data: DecodedData) -> None:
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.concatenate([data.y_train, np.zeros(10, dtype=np.int64)])
    skewed = DecodedData(
        24,
        data.class_names,
        np.concatenate([data.x_train, data.x_train[:10]]),
        labels,
        data.x_val,
        data.y_val,
        data.mean,
        data.std,
    )
    trainer = Trainer(
        "mlp", HParams(input_size=24), TrainSpec(class_weights="balanced"), skewed, "cpu"
    )
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    assert trainer.criterion.weight is not None
    assert trainer.criterion.weight.numpy() == pytest.approx(expected, rel=1e-6)


def test_a_diverging_loss_fails_the_trial_with_a_reason(data: DecodedData) -> None:
    trainer = Trainer(
        "mlp",
        HParams(input_size=24, lr=1e6, optimizer="sgd", momentum=0.0),
        TrainSpec(),
        data,
        "cpu",
    )
    with pytest.raises(
        FloatingPointError,
        match=r"loss became (nan|inf) in epoch \d+ \(lr 1000000.0 may be too high\)",
    ):
        for _ in range(20):
            trainer.fit_epoch()


def test_checkpoint_describes_itself(data: DecodedData, tmp_path: Path) -> None:
    import json

    trainer = Trainer(
        "cnn", HParams(input_size=24, channels=[4]), TrainSpec(max_epochs=1), data, "cpu"
    )
    trainer.save(tmp_path, trainer.fit_epoch())
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["model"] == "cnn" and state["epoch"] == 1
    assert "hidden_sizes" not in state["hparams"] and state["hparams"]["channels"] == [4]
    assert state["class_names"] == data.class_names
    assert state["preprocessing"]["resize"] == [24, 24]
    weights = torch.load(tmp_path / "model.pt", weights_only=True)
    assert any(k.endswith("weight") for k in weights)


def test_ema_averages_every_step_and_is_what_is_evaluated_and_saved(
    data: DecodedData, tmp_path: Path
) -> None:
    from skinsearch.training.optim import build_ema

    # by hand: a copy at the first update, then a step of 1 - min(decay, (1 + n) / (10 + n))
    # towards the model after n updates
    model = torch.nn.Linear(2, 1)
    ema = build_ema(model, HParams(ema=0.5))
    assert ema is not None and build_ema(model, HParams()) is None
    expected = 0.0
    for n, value in enumerate([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]):
        with torch.no_grad():
            model.bias.fill_(value)
        ema.update_parameters(model)
        step = 1.0 if n == 0 else 1.0 - min(0.5, (1 + n) / (10 + n))
        expected += (value - expected) * step
        assert ema.module.bias.item() == pytest.approx(expected)

    hp = HParams(input_size=24, channels=[4], batchnorm=True, ema=0.99, lr=3e-3)
    trainer = Trainer("cnn", hp, TrainSpec(max_epochs=2), data, "cpu")
    result = trainer.fit_epoch()
    assert trainer.ema is not None and int(trainer.ema.n_averaged) == -(-len(data.y_train) // 32)
    live, averaged = trainer.model.state_dict(), trainer.evaluated.state_dict()
    assert any(not torch.equal(live[k], averaged[k]) for k in live if k.endswith("running_mean"))
    trainer.save(tmp_path, result)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert saved.keys() == averaged.keys()
    assert all(torch.equal(v, averaged[k]) for k, v in saved.items())
    # what was evaluated is what a model rebuilt from model.pt predicts, and not the live weights
    rebuilt = Trainer("cnn", hp.model_copy(update={"ema": 0.0}), TrainSpec(), data, "cpu")
    rebuilt.model.load_state_dict(saved)
    assert np.allclose(rebuilt.predict_proba(data.x_val), trainer.predict_proba(data.x_val))
    rebuilt.model.load_state_dict(live)
    assert not np.allclose(rebuilt.predict_proba(data.x_val), trainer.predict_proba(data.x_val))


def test_a_cuda_oom_ends_the_trial_with_a_reason_and_a_fix() -> None:
    # A real CUDA OOM needs a GPU; the exception type is the one torch raises there.
    import torch

    from skinsearch.tune.trainable import DETERMINISTIC_FAILURES, failure

    exc = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert isinstance(exc, DETERMINISTIC_FAILURES)
    result = failure(exc, HParams(batch_size=128))
    assert result == {
        "stop_reason": "errored",
        "error": "OutOfMemoryError: CUDA out of memory at batch_size 128 (CUDA out of memory. "
        "Tried to allocate 2.00 GiB); lower batch_size or input_size, or give each trial more "
        "of the GPU (resources.gpus_per_trial)",
    }
    nan = failure(FloatingPointError("loss became nan in epoch 2"), HParams())
    assert nan["error"] == "FloatingPointError: loss became nan in epoch 2"


def test_learning_rate_schedules_warm_up_then_follow_their_shape() -> None:
    from skinsearch.training.optim import lr_factor

    warm = HParams(schedule="cosine", warmup_epochs=3)
    assert [lr_factor(warm, e, 13) for e in (1, 2, 3)] == [0.25, 0.5, 0.75]
    assert lr_factor(warm, 4, 13) == 1.0  # cosine starts at the full rate
    assert lr_factor(warm, 9, 13) == pytest.approx(0.5)  # half-way through the remaining 10
    assert lr_factor(warm, 13, 13) == pytest.approx(0.5 * (1 + np.cos(np.pi * 0.9)))
    step = HParams(schedule="step")
    assert [lr_factor(step, e, 9) for e in (1, 3, 4, 6, 7, 9)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    assert all(lr_factor(HParams(), e, 50) == 1.0 for e in range(1, 51))


def test_the_optimizer_runs_at_the_scheduled_rate(tiny_images: Path) -> None:
    data = decode_dataset(scan_dataset(tiny_images), [16])[16]
    hp = HParams(input_size=16, hidden_sizes=[8], lr=0.01, schedule="cosine", warmup_epochs=1)
    trainer = Trainer("mlp", hp, TrainSpec(max_epochs=5, patience=None), data, device="cpu")
    rates = []
    for _ in range(5):
        trainer.fit_epoch()
        rates.append(trainer.optimizer.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(0.005) and rates[1] == pytest.approx(0.01)
    assert rates[1] > rates[2] > rates[3] > rates[4] > 0


def test_tta_averages_the_image_and_its_flips() -> None:
    from skinsearch.training.trainer import tta_proba

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))
    batch = torch.randn(2, 3, 4, 4)
    plain = tta_proba(model, batch, tta=False)
    assert torch.allclose(plain, torch.softmax(model(batch), 1))
    averaged = tta_proba(model, batch, tta=True)
    views = [batch, batch.flip(3), batch.flip(2)]
    expected = sum(torch.softmax(model(v), 1) for v in views) / 3
    assert torch.allclose(averaged, expected) and torch.allclose(averaged.sum(1), torch.ones(2))


def test_the_resident_path_trains_as_the_cpu_path(data: DecodedData) -> None:
    # The GPU path (data kept on the device, batches augmented there) run on the CPU: without
    # augmentation it draws the same batches and must give the same metrics.
    hp = HParams(input_size=24, channels=[8], fc_size=16, lr=3e-3, seed=2)
    train = TrainSpec(max_epochs=3)
    per_image = Trainer("cnn", hp, train, data, "cpu", resident=False)
    resident = Trainer("cnn", hp, train, data, "cpu", resident=True)
    for _ in range(3):
        a, b = per_image.fit_epoch().metrics, resident.fit_epoch().metrics
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-5, nan_ok=True), key


def test_the_resident_path_augments_and_resumes_exactly(data: DecodedData, tmp_path: Path) -> None:
    hp = HParams(
        input_size=24, hidden_sizes=[32], lr=1e-3, hflip=0.5, affine=0.5, colour=0.5, seed=3
    )
    train = TrainSpec(max_epochs=3)
    plain = Trainer(
        "mlp",
        HParams(**{**hp.model_dump(), "hflip": 0, "affine": 0, "colour": 0}),
        train,
        data,
        "cpu",
        resident=True,
    )
    straight = Trainer("mlp", hp, train, data, "cpu", resident=True)
    expected = [straight.fit_epoch().metrics for _ in range(3)]
    assert expected[0]["train_loss"] != plain.fit_epoch().metrics["train_loss"]  # it augments

    first = Trainer("mlp", hp, train, data, "cpu", resident=True)
    first.save(tmp_path, first.fit_epoch())
    resumed = Trainer("mlp", hp, train, data, "cpu", resident=True)
    resumed.load(tmp_path)
    assert [resumed.fit_epoch().metrics for _ in range(2)] == expected[1:]


def test_bf16_runs_the_model_in_bfloat16_and_still_learns(data: DecodedData) -> None:
    hp = HParams(input_size=24, channels=[8, 16], batchnorm=True, fc_size=32, lr=3e-3)
    trainer = Trainer("cnn", hp, TrainSpec(max_epochs=8, precision="bf16"), data, "cpu")
    seen: list[torch.dtype] = []
    trainer.model[0].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    results = [trainer.fit_epoch() for _ in range(8)]
    assert set(seen) == {torch.bfloat16}  # training and evaluation, every batch
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # fp32 master weights
    assert all(np.isfinite(r.metrics["train_loss"]) for r in results)
    assert max(r.metrics["val_acc"] for r in results) >= 0.8  # as the fp32 trial above
    probs = trainer.predict_proba(data.x_val)
    assert probs.dtype == np.float32 and np.allclose(probs.sum(1), 1.0, atol=1e-5)
