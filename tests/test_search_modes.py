"""Search modes beyond the default grid: TPE through Optuna, and stopping with Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from skinsearch.cli import main
from skinsearch.store.trials import result_rows
from tests.conftest import cli, mlflow_runs, read_until, spawn_skinsearch

pytestmark = pytest.mark.slow


def descendants(pid: int) -> list[int]:
    """PIDs of every process below ``pid`` (from /proc; Linux)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def runs_of(storage: Path, experiment: str) -> list:  # type: ignore[type-arg]
    return mlflow_runs(storage, experiment)


def cmdline(pid: int) -> bytes:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    return b""


def test_tpe_samples_through_optuna_with_list_valued_choices(
    tiny_images: Path, tmp_path: Path
) -> None:
    space = tmp_path / "tpe.yaml"
    space.write_text(
        f"name: tpe\nmodel: cnn\ndata: {{path: {tiny_images}}}\n"
        "train: {max_epochs: 2}\nsearch: {sampler: tpe, num_samples: 6, seed: 1}\nscheduler: none\n"
        "params:\n  input_size: 16\n  lr: {loguniform: [1e-4, 1e-2]}\n"
        "  channels: {choice: [[4], [4, 8]]}\n  batch_size: {randint: [8, 16]}\n"
    )
    result = CliRunner().invoke(
        main,
        ["run", str(space), "--storage", str(tmp_path / "r"), "--cpus", "2", "--max-trials", "3"],
    )
    assert result.exit_code == 0, result.output
    assert "search tpe: 3 of 6 trials" in result.output
    children = [r for r in runs_of(tmp_path / "r", "tpe") if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 3
    for run in children:
        assert run.data.params["channels"] in {"[4]", "[4, 8]"}
        assert 1e-4 <= float(run.data.params["lr"]) <= 1e-2
        assert 8 <= int(run.data.params["batch_size"]) <= 16
        assert run.info.status == "FINISHED"


def test_ctrl_c_stops_cleanly_and_keeps_finished_trials(tiny_images: Path, tmp_path: Path) -> None:
    space = tmp_path / "long.yaml"
    # trial 0 diverges and fails in its first epoch; the others would run for a long time
    space.write_text(
        f"name: long\nmodel: mlp\ndata: {{path: {tiny_images}}}\n"
        "train: {max_epochs: 5000, patience: 5000}\nscheduler: none\nresources: {cpus_per_trial: 1}\n"
        "params:\n  input_size: 16\n  hidden_sizes: [16]\n  optimizer: sgd\n  momentum: 0.0\n"
        "  lr: {grid: [1000000.0, 0.001, 0.002]}\n"
    )
    storage = tmp_path / "r"
    proc = spawn_skinsearch("run", str(space), "--storage", str(storage), "--cpus", "2")
    assert proc.stdout is not None
    # the diverged trial has ended and the progress table shows the third one running
    output = read_until(proc, lambda text: " errored: " in text and "_00002  epoch" in text)
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    output.append(proc.stdout.read())
    assert proc.wait(timeout=120) == 130, "".join(output)
    text = "".join(output)
    assert "Traceback" not in text
    assert "1 errored" in text and "2 interrupted" in text
    assert "Interrupted: finished trials are kept" in text

    runs = runs_of(storage, "long")
    assert all(r.info.status != "RUNNING" for r in runs)
    ends = sorted(r.data.tags.get("skinsearch.end", "parent") for r in runs)
    assert ends == ["errored", "interrupted", "interrupted", "parent"]
    cli(["best", "--storage", str(storage)])


def test_a_killed_trial_resumes_from_its_checkpoint(tiny_images: Path, tmp_path: Path) -> None:
    import threading

    from skinsearch.config.spec import loads_spec
    from skinsearch.store.storage import Storage
    from skinsearch.tune.tuner import RunOptions, run_search

    spec = loads_spec(
        f"name: resume\nmodel: mlp\ndata: {{path: {tiny_images}}}\n"
        "train: {max_epochs: 150, patience: 1000, metric: val_loss}\nscheduler: none\n"
        "params:\n  input_size: 16\n  hidden_sizes: [16]\n  lr: 0.0003\n"
    )
    storage = tmp_path / "r"
    killed: list[int] = []

    def kill_the_trial_worker() -> None:
        # the worker's PID is in the trial's own results; kill exactly that process
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for result_file in storage.glob("resume/trial_*/result.json"):
                rows = [
                    json.loads(line)
                    for line in result_file.read_text().splitlines()
                    if line.strip()
                ]
                if len(rows) >= 10:
                    os.kill(rows[-1]["pid"], signal.SIGKILL)
                    killed.append(rows[-1]["pid"])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_trial_worker)
    killer.start()
    outcome = run_search(
        spec,
        RunOptions(storage=Storage(storage), name="resume", cpus=2, max_failures=1),
        echo=lambda _: None,
    )
    killer.join()

    assert killed, "the trial finished before it could be killed"
    (record,) = outcome.trials.values()
    assert record.end == "completed" and record.epochs == 150
    rows = [
        json.loads(line)
        for line in next(storage.glob("resume/trial_*/result.json")).read_text().splitlines()
    ]
    last = rows[-1]
    assert last["pid"] != killed[0]  # a new worker finished it
    assert (
        last["iterations_since_restore"] < last["training_iteration"] == 150
    )  # resumed, not restarted
    (child,) = [r for r in runs_of(storage, "resume") if "mlflow.parentRunId" in r.data.tags]
    assert child.info.status == "FINISHED" and child.data.tags["skinsearch.end"] == "completed"


def snapshot(folder: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    """What Tune's latest experiment state in ``folder`` (what --resume restores) says of each
    trial: ``{trial_<id>: {"status": ..., "epochs": ..., "checkpoint": ...}}``.

    The checkpoint is the one the trial's checkpoint manager (pickled in the state, Ray 2.60's
    private form, as ``tune.callbacks._mend_lost_checkpoint`` reads it) would restore; the last
    result names a checkpoint only when that result itself saved one."""
    states = sorted(folder.glob("experiment_state-*.json"))
    if not states:
        return {}
    with contextlib.suppress(ValueError, OSError, EOFError, pickle.UnpicklingError):  # mid-write
        trials = {}
        for meta, runtime in json.loads(states[-1].read_text())["trial_data"]:
            state = json.loads(runtime)
            manager = pickle.loads(bytes.fromhex(state["checkpoint_manager"]["value"]))
            latest = manager._latest_checkpoint_result
            trials[f"trial_{json.loads(meta)['trial_id']}"] = {
                "status": json.loads(meta)["status"],
                "epochs": (state.get("last_result") or {}).get("training_iteration", 0),
                "checkpoint": Path(latest.checkpoint.path).name if latest else None,
            }
        return trials
    return {}


def test_a_killed_driver_resumes_with_run_resume(
    tiny_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = tmp_path / "resumable.yaml"
    space.write_text(
        f"name: resumable\nmodel: mlp\ndata: {{path: {tiny_images}}}\n"
        # val_acc soon stops improving, so checkpoints are few
        "train: {max_epochs: 300, patience: 1000, metric: val_acc}\nscheduler: none\n"
        "resources: {cpus_per_trial: 1}\n"
        "params:\n  input_size: 16\n  hidden_sizes: [16]\n"
        "  lr: {grid: [0.0001, 0.0002, 0.0003, 0.0004]}\n"
    )
    storage = tmp_path / "r"
    args = ["run", str(space), "--storage", str(storage), "--cpus", "2"]
    # Tune snapshots the experiment every 0.5 s here (2 s by default), so that on a machine of
    # any speed a snapshot falls between the first trials' end and the last ones'
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "0.5")
    proc = spawn_skinsearch(*args, output=False)

    def ready(trials: dict[str, dict]) -> bool:  # type: ignore[type-arg]
        # the kill comes once the snapshot knows of an ended trial and of an unfinished one
        # that has a checkpoint
        statuses = [t["status"] for t in trials.values()]
        return "TERMINATED" in statuses and any(
            t["status"] != "TERMINATED" and t["checkpoint"] and t["epochs"] >= 5
            for t in trials.values()
        )

    deadline = time.monotonic() + 180
    while not ready(snapshot(storage / "resumable")) and time.monotonic() < deadline:
        time.sleep(0.05)
    started = descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # the local Ray the killed driver had started goes with it; stop any of its processes left
    time.sleep(3)
    for pid in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    trials = snapshot(storage / "resumable")
    assert ready(trials), f"the kill came too late: {trials}"
    ended = {name for name, t in trials.items() if t["status"] == "TERMINATED"}
    done_before = {
        storage / "resumable" / name / "result.json": len(
            (storage / "resumable" / name / "result.json").read_text().splitlines()
        )
        for name in ended
    }
    # Tune deletes superseded checkpoints at once but snapshots its state now and then, so a
    # killed driver's state can name a checkpoint that is gone. Make that certain for an
    # unfinished trial the snapshot knows a checkpoint of: remove all its checkpoints, as if
    # each had been superseded.
    victim_name = max(
        (n for n, t in trials.items() if n not in ended and t["checkpoint"]),
        key=lambda n: trials[n]["epochs"],
    )
    victim = storage / "resumable" / victim_name
    for checkpoint in victim.glob("checkpoint_*"):
        shutil.rmtree(checkpoint)

    result = cli([*args, "--resume"])
    assert "Traceback" not in result.output
    assert "4 trials: 4 completed" in result.output
    assert "trials had ended; " in result.output
    assert f"{victim.name}: its last checkpoint (checkpoint_" in result.output
    assert "after the search's last snapshot; it starts again" in result.output
    # started again from scratch: Tune wrote its results anew, one row per epoch
    rows = [json.loads(line) for line in (victim / "result.json").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == list(range(1, 301))
    for result_file, lines in done_before.items():  # finished trials were not rerun
        assert len(result_file.read_text().splitlines()) == lines
    children = [r for r in runs_of(storage, "resumable") if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.tags["skinsearch.trial_id"] for r in children) == sorted(
        {r.data.tags["skinsearch.trial_id"] for r in children}
    )  # one run per trial
    assert len(children) == 4
    assert all(r.info.status == "FINISHED" for r in runs_of(storage, "resumable"))
    assert {r.data.tags["skinsearch.end"] for r in children} == {"completed"}


def test_the_snapshot_period_is_set_for_one_search_and_a_users_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skinsearch.store.storage import Storage
    from skinsearch.tune.tuner import RunOptions, _snapshot_period

    folder = RunOptions(Storage(tmp_path, None), "s")
    bucket = RunOptions(Storage(tmp_path, "s3://bucket/prefix"), "s")
    monkeypatch.delenv("TUNE_GLOBAL_CHECKPOINT_S", raising=False)
    for options, period in [(folder, "2"), (bucket, "10")]:
        with _snapshot_period(options):
            assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == period
        assert "TUNE_GLOBAL_CHECKPOINT_S" not in os.environ  # not left for the next search
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "7")
    with _snapshot_period(bucket):
        assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "7"
    assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "7"


def test_ctrl_c_in_a_confirmation_exits_130_and_resume_carries_it_on(
    tiny_images: Path, tmp_path: Path
) -> None:
    import threading

    space = tmp_path / "conf.yaml"
    space.write_text(
        f"name: conf\nmodel: mlp\ndata: {{path: {tiny_images}}}\n"
        "train: {max_epochs: 150, patience: 1000, metric: val_acc}\nscheduler: none\n"
        "resources: {cpus_per_trial: 1}\nconfirm: {top: 1, seeds: 3}\n"
        "params:\n  input_size: 16\n  hidden_sizes: [16]\n  lr: {grid: [0.001, 0.0001]}\n"
    )
    storage = tmp_path / "r"
    args = ["run", str(space), "--storage", str(storage), "--cpus", "1"]  # one run at a time
    proc = spawn_skinsearch(*args)
    assert proc.stdout is not None
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout or []))
    reader.start()

    def confirmed_runs() -> dict[Path, int]:
        done = {}
        for result_file in storage.glob("conf-confirm/trial_*/result.json"):
            rows = [json.loads(x) for x in result_file.read_text().splitlines() if x.strip()]
            if rows and rows[-1].get("stop_reason"):
                done[result_file] = len(rows)
        return done

    deadline = time.monotonic() + 240
    while not confirmed_runs() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal
    assert proc.wait(timeout=120) == 130
    reader.join(timeout=30)
    text = "".join(output)
    done_before = confirmed_runs()
    assert done_before and len(done_before) < 3, "the Ctrl-C came too late or too early"
    assert "Traceback" not in text
    assert (
        "Interrupted: nothing was chosen; the confirmation's finished runs are kept in "
        f"{storage / 'conf-confirm'}; `skinsearch run {space} --resume` carries it on"
    ) in text
    assert not (storage / "conf" / "confirmation.json").exists()

    result = cli([*args, "--resume"])
    assert "confirmed over 3 seeds each" in result.output
    assert not (storage / "conf-confirm-2").exists()  # carried on, not started again
    saved = json.loads((storage / "conf" / "confirmation.json").read_text())
    assert saved["confirmed_in"] == "conf-confirm"
    for result_file, lines in done_before.items():  # finished runs were not rerun
        assert len(result_file.read_text().splitlines()) == lines
    runs = [result_rows(f.parent) for f in storage.glob("conf-confirm/trial_*/result.json")]
    assert [len(rows) for rows in runs] == [150] * 3


def test_ctrl_c_while_ray_starts_stops_before_any_trial(tiny_images: Path, tmp_path: Path) -> None:
    space = tmp_path / "early.yaml"
    space.write_text(
        f"name: early\nmodel: mlp\ndata: {{path: {tiny_images}}}\n"
        "train: {max_epochs: 5000, patience: 5000}\nscheduler: none\n"
        "params:\n  input_size: 16\n  hidden_sizes: [16]\n  lr: {grid: [0.001, 0.002]}\n"
    )
    proc = spawn_skinsearch("run", str(space), "--storage", str(tmp_path / "r"), "--cpus", "2")
    assert proc.stdout is not None

    def ray_starting() -> bool:  # ray.init has started Ray's first process, and waits on more
        return any(b"gcs_server" in cmdline(pid) for pid in descendants(proc.pid))

    deadline = time.monotonic() + 60
    while not ray_starting() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    output = [proc.stdout.read()]
    assert proc.wait(timeout=120) == 130, "".join(output)
    text = "".join(output)
    assert "Traceback" not in text
    assert "2 trials: 2 not started" in text and "Interrupted" in text
    assert "best model:" not in text  # no next steps for a search that ran nothing
