"""A real search: Ray Tune on a local Ray instance, ASHA, two concurrent trials, MLflow on SQLite,
TensorBoard event files; then ``best --export`` and ``predict`` on what it left."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from skinsearch.cli import main
from skinsearch.tune.searchers import BEST_SO_FAR
from tests.conftest import cli, mlflow_runs, storage_client

pytestmark = pytest.mark.slow

SPACE = """
name: tiny
model: mlp
data: {{path: {data}}}
train: {{max_epochs: 6, patience: 3, metric: val_acc}}
search: {{sampler: grid, num_samples: 1, seed: 0}}
scheduler: {{type: asha, grace_period: 1, reduction_factor: 2}}
resources: {{cpus_per_trial: 1}}
params:
  input_size: 16
  hidden_sizes: [32]
  lr: {{grid: [0.003, 0.0003, 0.00003, 1000000.0]}}
  optimizer: sgd
  momentum: 0.0
  batch_size: {{choice: [8, 16]}}
  hflip: 0.5
"""


@pytest.fixture(scope="module")
def search(tiny_images: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("search")
    space_file = work / "tiny.yaml"
    space_file.write_text(SPACE.format(data=tiny_images))
    storage = work / "results"
    result = CliRunner().invoke(
        main, ["run", str(space_file), "--storage", str(storage), "--cpus", "2"]
    )
    return {"result": result, "storage": storage, "work": work, "experiment": storage / "tiny"}


def tiny_runs(storage: Path) -> list[Any]:
    return mlflow_runs(storage, "tiny")


def test_the_search_runs_and_summarises(search: dict[str, Any]) -> None:
    result: Result = search["result"]
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = result.output
    assert "dashboard http://127.0.0.1:" in out
    assert "] 4 trials: " in out and "best so far: trial_" in out  # the progress table
    assert "Top 3 by val_acc (best epoch of each trial):" in out
    assert "4 trials: " in out and "1 errored" in out
    assert "errored: trial_" in out and "may be too high" in out
    assert (search["experiment"] / "search.yaml").exists()


def test_every_trial_is_a_finished_child_run_with_per_epoch_metrics(search: dict[str, Any]) -> None:
    runs = tiny_runs(search["storage"])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    assert all(r.info.status != "RUNNING" for r in runs)
    ends = sorted(r.data.tags["skinsearch.end"] for r in children)
    assert "errored" in ends and ("stopped_by_asha" in ends or "early_stopped" in ends)
    errored = next(r for r in children if r.data.tags["skinsearch.end"] == "errored")
    assert (
        errored.info.status == "FAILED" and "loss became" in errored.data.tags["skinsearch.error"]
    )

    # two trials ran at the same time (1 CPU each, --cpus 2)
    spans = sorted((r.info.start_time, r.info.end_time) for r in children)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))

    client = storage_client(search["storage"])
    for run in children:
        assert run.data.params["lr"] in {"0.003", "0.0003", "3e-05", "1000000.0"}
        assert run.data.params["hidden_sizes"] == "[32]"
        if run.data.tags["skinsearch.end"] == "errored":
            continue
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [m.step for m in history] == list(range(1, len(history) + 1))
        assert {
            "train_loss",
            "val_auc",
            "val_macro_f1",
            "val_recall_small_pink",
            "best_val_acc",
        } <= set(run.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "best_epoch")}
        assert {
            "best_epoch/confusion_matrix.png",
            "best_epoch/classification_report.txt",
            "best_epoch/classification_report.json",
        } <= artifacts


def test_every_epoch_reports_the_best_so_far_that_asha_compares(search: dict[str, Any]) -> None:
    judged = 0
    for result_file in search["experiment"].glob("trial_*/result.json"):
        rows = [json.loads(line) for line in result_file.read_text().splitlines() if line]
        values = [row["val_acc"] for row in rows if "val_acc" in row]
        if not values:
            continue  # the diverging trial fails in its first epoch
        judged += 1
        running = list(itertools.accumulate(values, max))
        assert [row[BEST_SO_FAR] for row in rows] == running
    assert judged == 3


def test_tensorboard_has_every_trials_events(search: dict[str, Any]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdirs = sorted((search["experiment"] / "tensorboard").iterdir())
    assert len(logdirs) == 4
    complete = 0
    for logdir in logdirs:
        acc = EventAccumulator(
            str(logdir), size_guidance={"histograms": 0, "images": 0, "tensors": 0}
        )
        acc.Reload()
        tags = acc.Tags()
        if "val_acc" not in tags["scalars"]:
            continue  # the diverging trial fails in its first epoch
        complete += 1
        assert {"train_loss", "val_loss", "val_balanced_acc"} <= set(tags["scalars"])
        assert "val/first_batch" in tags["images"] and "confusion_matrix" in tags["images"]
        assert any(t.startswith("weights/") for t in tags["histograms"])
        assert any("classification_report" in t for t in tags["tensors"])
    assert complete == 3
    # Tune's own TensorBoard logger is off: no second set of event files in trial folders
    assert not list(search["experiment"].glob("trial_*/events.out.tfevents*"))


def test_best_exports_a_bundle_that_predicts(search: dict[str, Any], tiny_images: Path) -> None:
    runner = CliRunner()
    bundle = search["work"] / "bundle"
    best = runner.invoke(
        main,
        [
            "best",
            "--storage",
            str(search["storage"]),
            "--metric",
            "val_acc",
            "--export",
            str(bundle),
        ],
    )
    assert best.exit_code == 0, best.output
    assert "from mlflow" in best.output and "exported to" in best.output
    expected = {
        "model_state.pt",
        "model_torchscript.pt",
        "config.yaml",
        "metrics.json",
        "classes.json",
        "preprocessing.json",
        "confusion_matrix.png",
        "classification_report.txt",
        "classification_report.json",
    }
    assert expected <= {p.name for p in bundle.iterdir()}
    assert json.loads((bundle / "classes.json").read_text()) == [
        "blue_grey",
        "ragged_dark",
        "small_pink",
    ]

    images = sorted((tiny_images / "val" / "small_pink").iterdir())[:3]
    predicted = cli(["predict", str(bundle), *map(str, images)])
    lines = predicted.output.strip().splitlines()
    assert len(lines) == 3
    for line, image in zip(lines, images, strict=True):
        path, label, prob = line.split("\t")
        assert path == str(image) and label in {"blue_grey", "ragged_dark", "small_pink"}
        assert 0.0 < float(prob) <= 1.0

    import torch

    scripted = torch.jit.load(str(bundle / "model_torchscript.pt"))
    assert scripted(torch.zeros(2, 3, 16, 16)).shape == (2, 3)

    again = runner.invoke(
        main, ["best", "--storage", str(search["storage"]), "--export", str(bundle)]
    )
    assert again.exit_code == 2 and "Traceback" not in again.output
    assert again.output.strip().splitlines()[-1] == (
        f"Error: --export: {bundle} is not empty; choose another folder or pass --force"
    )

    notes = search["work"] / "notes.txt"
    notes.write_text("not an image")
    not_image = runner.invoke(main, ["predict", str(bundle), str(notes)])
    assert not_image.exit_code == 2 and "Traceback" not in not_image.output
    assert not_image.output.strip() == (
        f"Error: {notes}: not a readable image (give JPEG, PNG, BMP or WebP files)"
    )


def test_best_falls_back_to_tune_results_without_mlflow(
    search: dict[str, Any], tmp_path: Path
) -> None:
    empty = f"sqlite:///{tmp_path / 'other.db'}"
    result = CliRunner().invoke(
        main,
        [
            "best",
            "--storage",
            str(search["storage"]),
            "--mlflow-uri",
            empty,
            "--metric",
            "val_loss",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "by val_loss (min), from tune" in result.output


def test_report_writes_a_page_that_needs_no_network_and_logs_it(search: dict[str, Any]) -> None:
    cli(["report", "--storage", str(search["storage"])])
    report = search["experiment"] / "report"
    page = (report / "index.html").read_text()
    expected = {
        "index.html",
        "learning_curves.png",
        "confusion_matrix.png",
        "asha_rungs.png",
        "param_lr.png",
        "param_batch_size.png",
    }
    assert expected <= {p.name for p in report.iterdir()}
    assert "<script" not in page and "http://" not in page and "https://" not in page
    for name in expected - {"index.html"}:
        assert f'src="{name}"' in page
    # the diverging trial failed in its first epoch and reported nothing
    assert "3 of 4 planned trials reported" in page
    assert "Leaderboard: top 3 by val_acc" in page
    assert "trial-epochs run of the 18 a full grid" in page  # 3 trials x 6 epochs
    assert "Trials reaching each rung: epoch 1: 3, epoch 2: " in page
    assert "Needs at least 5 trials" in page  # importance is not made up from 3 points

    (parent,) = [r for r in tiny_runs(search["storage"]) if "mlflow.parentRunId" not in r.data.tags]
    client = storage_client(search["storage"])
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert "report/index.html" in logged and "report/learning_curves.png" in logged


def test_best_confirm_retrains_the_top_configurations_and_chooses_on_the_mean(
    search: dict[str, Any],
) -> None:
    bundle = search["work"] / "confirmed"
    result = CliRunner().invoke(
        main,
        [
            "best",
            "--storage",
            str(search["storage"]),
            "--name",
            "tiny",
            "--confirm",
            "2",
            "--seeds",
            "2",
            "--cpus",
            "2",
            "--export",
            str(bundle),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "confirming the top 2 of search tiny by val_acc: 2 seeds each, 4 runs" in result.output
    assert "runs at once" not in result.output  # 2 rounds of 2 on the 2 CPUs, as the file asks
    assert "confirmed over 2 seeds each (mean ± std at each run's best epoch):" in result.output
    assert " ± " in result.output and "winner: the configuration of trial_" in result.output

    confirm_dir = search["storage"] / "tiny-confirm"
    params = [json.loads(p.read_text()) for p in confirm_dir.glob("trial_*/params.json")]
    assert len(params) == 4
    assert len({p["seed"] for p in params}) == 4  # fresh seeds, none reused
    chosen = yaml.safe_load((bundle / "config.yaml").read_text())["chosen_by"]
    assert chosen["protocol"] == "mean over 2 seeds of the top 2 configurations"
    assert chosen["searched_in"] == "tiny" and chosen["confirmed_in"] == "tiny-confirm"
    assert len(chosen["seeds"]) == 2 and chosen["std"] >= 0


def test_best_confirm_with_folds_validates_on_every_split(search: dict[str, Any]) -> None:
    import re

    bundle = search["work"] / "confirmed-folds"
    args = ["best", "--storage", str(search["storage"]), "--name", "tiny", "--confirm", "1"]
    result = CliRunner().invoke(
        main, [*args, "--folds", "3", "--cpus", "2", "--export", str(bundle)]
    )
    assert result.exit_code == 0, result.output
    assert "3 folds of train+val each, 3 runs" in result.output
    assert "as 3 k-fold splits of train+val" in result.output
    name = re.search(r"search (tiny-confirm[-\d]*): ", result.output)
    assert name is not None
    # 3 equally long runs on 2 CPUs: all at once, no core idle while the third runs alone
    assert "all 3 runs at once, 0.6666 CPU each (resources.cpus_per_trial 1)" in result.output
    saved = yaml.safe_load((search["storage"] / name.group(1) / "search.yaml").read_text())
    assert saved["spec"]["resources"]["cpus_per_trial"] == 0.6666
    params = [
        json.loads(p.read_text())
        for p in (search["storage"] / name.group(1)).glob("trial_*/params.json")
    ]
    assert sorted(p["fold"] for p in params) == [0, 1, 2]
    assert len({p["seed"] for p in params}) == 1  # one seed, three splits
    chosen = yaml.safe_load((bundle / "config.yaml").read_text())["chosen_by"]
    assert chosen["folds"] == 3
    assert chosen["protocol"] == "mean over 3 folds of train+val of the top 1 configurations"


def test_best_shows_the_confirmed_winner_once_a_search_is_confirmed(
    search: dict[str, Any],
) -> None:
    # the latest search is still tiny, not one of its confirmations
    storage = str(search["storage"])
    if not (search["experiment"] / "confirmation.json").exists():  # this test alone
        args = ["best", "--storage", storage, "--confirm", "1", "--folds", "3", "--cpus", "2"]
        assert CliRunner().invoke(main, args).exit_code == 0
    confirmed = json.loads((search["experiment"] / "confirmation.json").read_text())
    bundle = search["work"] / "recalled"
    result = cli(["best", "--storage", storage, "--export", str(bundle)])
    assert f"search tiny was confirmed in {confirmed['confirmed_in']}: " in result.output
    representative = confirmed["representative"]
    assert f"its run closest to the mean is {representative} " in result.output
    chosen = yaml.safe_load((bundle / "config.yaml").read_text())["chosen_by"]
    assert chosen["confirmed_in"] == confirmed["confirmed_in"] and chosen["folds"] == 3

    single = cli(["best", "--storage", storage, "--single"])
    assert "search tiny: best of " in single.output and " trials by val_acc (max)" in single.output
    other = CliRunner().invoke(main, ["best", "--storage", storage, "--metric", "val_loss"])
    assert "search tiny: best of " in other.output and " trials by val_loss (min)" in other.output


CONFIRMED_SPACE = """
name: tinyc
model: mlp
data: {{path: {data}}}
train: {{max_epochs: 3, patience: 3, metric: val_balanced_acc}}
scheduler: none
confirm: {{top: 2, seeds: 2}}
params:
  input_size: 16
  hidden_sizes: [16]
  lr: {{grid: [0.003, 0.0003, 0.00003]}}
"""


def test_a_confirm_block_retrains_the_top_configurations_after_the_search(
    tiny_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.chdir(tmp_path)  # data.path relative to it, as users write it
    space_file = tmp_path / "tinyc.yaml"
    space_file.write_text(CONFIRMED_SPACE.format(data=os.path.relpath(tiny_images)))
    storage = tmp_path / "results"
    args = ["--storage", str(storage), "--cpus", "2"]
    result = cli(["run", str(space_file), *args])
    out = result.output
    assert "3 trials: 3 completed" in out  # the search, then its confirmation
    assert "confirming the top 2 of search tinyc by val_balanced_acc: 2 seeds each, 4 runs" in out
    assert "winner: the configuration of trial_" in out
    assert (
        f"confirmed winner: skinsearch best --storage {storage} --name tinyc "
        "--metric val_balanced_acc --export bundles/tinyc"
    ) in out
    saved = yaml.safe_load((storage / "tinyc-confirm" / "search.yaml").read_text())
    assert saved["confirms"] == "tinyc" and saved["spec"]["scheduler"]["type"] == "none"
    assert "confirm" not in saved["spec"]  # a confirmation is not confirmed again
    assert saved["spec"]["data"]["path"] == str(tiny_images)  # readable from anywhere

    best = cli(["best", *args[:2], "--metric", "val_balanced_acc"])
    assert "search tinyc was confirmed in tinyc-confirm: " in best.output
    assert "confirmed over 2 seeds each" in best.output

    cli(["report", *args[:2]])
    page = (storage / "tinyc" / "report" / "index.html").read_text()
    assert "Confirmed winner: the top 2 by val_balanced_acc retrained over 2 seeds each" in page
    assert page.count(" ± ") >= 2 * 5  # two configurations, five metrics each

    again = cli(["run", str(space_file), *args, "--resume"])
    assert "search tinyc was confirmed before, in tinyc-confirm" in again.output
    assert not (storage / "tinyc-confirm-2").exists()  # not retrained
