"""The speed benchmark's own logic: the baseline trains and counts decodes, the overhead
arithmetic is right. (The benchmark's figures come from running it; see docs/BENCHMARKS.md.)"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import confirm_rounds  # noqa: E402
import ema  # noqa: E402
import feature_probe  # noqa: E402
import gpu_variants  # noqa: E402
import precision  # noqa: E402
from _common import bench_spec  # noqa: E402
from search_speed import _overhead  # noqa: E402
from seed_baseline import run_baseline  # noqa: E402

SPACE = """
name: tiny
model: mlp
data: {path: builtin:synthetic}
train: {max_epochs: 5, patience: 1}
search: {sampler: grid, num_samples: 3, seed: 0}
params:
  input_size: {grid: [16, 24]}
  lr: {loguniform: [1.0e-3, 1.0e-2]}
  hflip: 0.5
  hidden_sizes: [32]
"""


def test_the_slice_replaces_data_size_and_epochs(tmp_path: Path, tiny_images: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    spec, configs = bench_spec(path, tiny_images, input_size=16, epochs=2, trials=2)
    assert spec.train.max_epochs == 2
    assert spec.data.path == str(tiny_images.resolve())
    assert len(configs) == 2 and {c["input_size"] for c in configs} == {16}


def test_baseline_decodes_every_image_every_epoch(tmp_path: Path, tiny_images: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    spec, configs = bench_spec(path, tiny_images, input_size=16, epochs=2, trials=2)
    figures = run_baseline(spec, configs, workers=0, echo=lambda _: None)
    n_train, n_val = 3 * 24, 3 * 8
    assert figures["trial_epochs"] <= 4
    assert figures["decodes"] == figures["trial_epochs"] * (n_train + n_val)
    assert figures["train_images"] == figures["trial_epochs"] * n_train
    assert 0.0 <= figures["best"] <= 1.0


def _rows(start: float, fits: list[float], overhead_per_epoch: float) -> list[dict[str, float]]:
    rows, elapsed, fit_total = [], 0.0, 0.0
    for fit in fits:
        elapsed += fit + overhead_per_epoch
        fit_total += fit
        rows.append({"trial_started_at": start, "time_trial_s": elapsed, "time_fit_s": fit_total})
    return rows


def test_overhead_counts_time_outside_training_and_slot_gaps() -> None:
    # two slots; trial c starts 0.5 s after trial a frees its slot
    a = _rows(0.0, [1.0, 1.0], 0.25)  # 0 .. 2.5
    b = _rows(0.0, [1.0, 1.0, 1.0], 0.0)  # 0 .. 3.0
    c = _rows(3.0, [1.0], 0.5)  # 3.0 .. 4.5
    figures = _overhead([a, b, c], slots=2)
    assert figures["in_trial_overhead_s_mean"] == pytest.approx((0.5 + 0.0 + 0.5) / 3)
    assert figures["start_gap_s_mean"] == pytest.approx(0.5)
    assert figures["overhead_s_per_trial"] == pytest.approx((1.0 + 0.5) / 3)


def test_the_gpu_variants_script_runs_what_a_cpu_can(tiny_images: Path) -> None:
    # its figures need the GPU machine; here its logic: the resident path checked against the
    # CPU path (both on the CPU), and the variants a CPU can run
    from skinsearch.config.hparams import HParams
    from skinsearch.data import decode_dataset, scan_dataset

    files = scan_dataset(tiny_images)
    data = decode_dataset(files, [24])[24]
    hp = HParams(input_size=24, batch_size=8, **gpu_variants.SEED_CNN)
    line = gpu_variants.check_resident(data, hp, "cpu")
    assert "same within tolerance" in line and "resident=True" in line
    assert gpu_variants.seed_way(files, hp, data, "cpu", workers=0, steps=3) > 0
    assert gpu_variants.resident(data, hp, "cpu", steps=3) > 0
    assert gpu_variants.bare_loop(data, hp, "cpu", steps=3) > 0
    for variant in ({"bf16": True}, {"graph": True}):
        with pytest.raises(RuntimeError, match="needs CUDA"):
            gpu_variants.bare_loop(data, hp, "cpu", steps=3, **variant)


def test_the_precision_benchmark_trains_both_ways_on_one_configuration(tiny_images: Path) -> None:
    from skinsearch.data import decode_dataset, scan_dataset

    data = decode_dataset(scan_dataset(tiny_images), [32])[32]
    hp = precision.CASES["plus64"][1]
    figures = precision.compare(data, 32, {**hp, "channels": [8, 16]}, epochs=2)
    assert set(figures) == {"fp32", "bf16"}
    for f in figures.values():
        assert f["seconds"] > 0 and 0.0 <= f["val_balanced_acc"] <= 1.0 and f["train_loss"] > 0
    rates = precision.layout_rates(16, {"channels": [4, 8]}, steps=2)
    assert list(rates) == ["NCHW input", "trainer's input", "+ channels_last model"]
    assert all(rate > 0 for rate in rates.values())


def test_the_confirmation_benchmark_runs_every_run_in_both_schedules() -> None:
    import argparse

    args = argparse.Namespace(model="cnn", size=32, steps=1)
    for share in (1.0, 0.6666):  # 2 at once then 1, and all 3 at once
        wall, run = confirm_rounds.schedule(3, 2, share, args)  # returns once all 3 ran
        assert wall > 0 and run > 0
    assert confirm_rounds.train_run("cnn", 32, 2, threads=1) > 0


EMA_SPACE = """
name: tiny_ema
model: cnn
data: {path: builtin:synthetic}
train: {max_epochs: 2, metric: val_balanced_acc}
search: {sampler: grid}
scheduler: none
params: {input_size: 24, channels: [8], batchnorm: true, lr: 3.0e-3, hflip: 0.5}
"""


def test_the_ema_benchmark_averages_one_run_as_a_trial_with_ema_would(
    tmp_path: Path, tiny_images: Path
) -> None:
    from skinsearch.config.hparams import HParams
    from skinsearch.config.spec import TrainSpec
    from skinsearch.data import decode_dataset, scan_dataset
    from skinsearch.training.trainer import Trainer

    space = tmp_path / "space.yaml"
    space.write_text(EMA_SPACE)
    progress = tmp_path / "out.seed5.json"
    curves = ema.train_seed(space, tiny_images, None, seed=5, decays=[0.9], progress=progress)
    assert [len(c) for c in curves.values()] == [2, 2]
    assert json.loads(progress.read_text()) == {str(d): c for d, c in curves.items()}
    # the baseline is the run as trained, and each average is what a trial with that ema scores
    data = decode_dataset(scan_dataset(tiny_images), [24])[24]
    hp = HParams(input_size=24, channels=[8], batchnorm=True, lr=3e-3, hflip=0.5, seed=5)
    train = TrainSpec(max_epochs=2, metric="val_balanced_acc")
    for decay, curve in curves.items():
        trainer = Trainer("cnn", hp.model_copy(update={"ema": decay}), train, data, "cpu")
        for want in curve:
            got = trainer.fit_epoch().metrics
            assert got["val_balanced_acc"] == pytest.approx(want["val_balanced_acc"])
            assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-5)
    assert curves[0.0][-1]["val_loss"] != pytest.approx(curves[0.9][-1]["val_loss"], rel=1e-5)
    assert ema.best([{"epoch": 1.0, "m": 0.5}, {"epoch": 2.0, "m": 0.5}], "m") == (1, 0.5)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_ema_benchmark_ends_its_runs_and_prints_the_epochs_they_finished(
    tmp_path: Path, tiny_images: Path, signum: int
) -> None:
    import subprocess
    import time

    space = tmp_path / "space.yaml"  # far more epochs than the test waits for
    space.write_text(EMA_SPACE.replace("max_epochs: 2,", "max_epochs: 10000, patience: null,"))
    out = tmp_path / "out.json"
    command = [sys.executable, str(BENCH / "ema.py"), str(space), "--data", str(tiny_images)]
    bench = subprocess.Popen(
        [*command, "--seeds", "1", "2", "--decays", "0.9", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Ctrl-C as a terminal gives it, even where this test runs with SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    progress = [tmp_path / "out.seed1.json", tmp_path / "out.seed2.json"]
    deadline = time.monotonic() + 120
    while not all(p.exists() for p in progress) and bench.poll() is None:
        assert time.monotonic() < deadline, "no epoch ended in 120 s"
        time.sleep(0.2)
    assert bench.poll() is None, bench.communicate()[0]  # it must still be training
    workers = _children(bench.pid)
    assert len(workers) >= 2  # one per seed (and multiprocessing's resource tracker)
    bench.send_signal(signum)
    output, _ = bench.communicate(timeout=60)
    assert bench.returncode == 130, output
    assert "stopped (seed 1 epoch " in output and "| 0.9 | " in output, output
    assert "Traceback" not in output, output
    deadline = time.monotonic() + 10  # the resource tracker exits once it sees its parent gone
    while [w for w in workers if _alive(w)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [_command(w) for w in workers if _alive(w)]
    kept = json.loads(out.read_text())  # the epochs each run finished, whole
    assert set(kept) == {"1", "2"} and all(len(kept[s]["0.0"]) >= 1 for s in kept)


def _children(pid: int) -> list[int]:
    # from /proc (Linux): the processes whose parent is ``pid``
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:  # a process may end between the listing and the read
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _alive(pid: int) -> bool:
    try:  # a zombie has exited; only its exit status waits to be read
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # gone, and reaped
        return False


def test_the_feature_probe_scores_features_that_carry_the_classes_above_noise() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    y_train, y_val = np.repeat([0, 1], 40), np.repeat([0, 1], 20)
    noise_train, noise_val = rng.normal(size=(80, 4)), rng.normal(size=(40, 4))
    # one feature carries the class, shifted by 3 standard deviations
    signal_train, signal_val = noise_train.copy(), noise_val.copy()
    signal_train[:, 0] += 3 * y_train
    signal_val[:, 0] += 3 * y_val
    auc, recall_0, recall_1 = feature_probe.pair_scores(
        feature_probe.probe(signal_train, y_train, signal_val, y_val, 1.0), y_val
    )
    assert auc > 0.95 and recall_0 > 0.8 and recall_1 > 0.8
    noise_auc, _, _ = feature_probe.pair_scores(
        feature_probe.probe(noise_train, y_train, noise_val, y_val, 1.0), y_val
    )
    assert 0.25 < noise_auc < 0.75
    # class-balanced: a 4-to-1 train imbalance does not make the probe call everything class 0
    keep = np.r_[np.arange(40), np.arange(40, 50)]
    probs = feature_probe.probe(signal_train[keep], y_train[keep], signal_val, y_val, 1.0)
    assert feature_probe.pair_scores(probs, y_val)[2] > 0.8
