"""``--address``: a search joins a Ray cluster it did not start, and leaves it running."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from skinsearch.cli import main

pytestmark = pytest.mark.slow


def test_run_joins_an_existing_cluster_and_leaves_it_up(tiny_images: Path, tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False}
    )
    try:
        space = tmp_path / "joined.yaml"
        space.write_text(
            f"name: joined\nmodel: mlp\ndata: {{path: {tiny_images}}}\ntrain: {{max_epochs: 2}}\n"
            "scheduler: none\nparams:\n  input_size: 16\n  lr: {grid: [0.001, 0.01]}\n"
        )
        result = CliRunner().invoke(
            main,
            ["run", str(space), "--storage", str(tmp_path / "r"), "--address", cluster.address],
        )
        assert result.exit_code == 0, result.output
        assert "Ray: 2 CPUs, 0 GPUs" in result.output
        assert "2 trials: 2 completed" in result.output
        assert cluster.remaining_processes_alive()  # joined, used, and left running
    finally:
        cluster.shutdown()


def test_trials_spread_over_nodes_and_survive_losing_one(tiny_images: Path, tmp_path: Path) -> None:
    import json
    import threading
    import time

    from mlflow.tracking import MlflowClient
    from ray.cluster_utils import Cluster

    from skinsearch.config.spec import loads_spec
    from skinsearch.store.storage import Storage
    from skinsearch.tune.tuner import RunOptions, run_search

    # a head that runs no trials and three one-CPU worker nodes, all on loopback
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    workers = [cluster.add_node(num_cpus=1) for _ in range(3)]
    cluster.wait_for_nodes()
    spec = loads_spec(
        f"name: nodes\nmodel: mlp\ndata: {{path: {tiny_images}}}\n"
        "train: {max_epochs: 150, patience: 1000, metric: val_loss}\nscheduler: none\n"
        "resources: {cpus_per_trial: 1}\n"
        "params:\n  input_size: 16\n  hidden_sizes: [16]\n  lr: {grid: [0.0003, 0.0004]}\n"
    )
    storage = tmp_path / "r"
    killed: list[str] = []

    def rows(path: Path) -> list[dict]:  # type: ignore[type-arg]
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]

    def remove_a_busy_node() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            files = list(storage.glob("nodes/trial_*/result.json"))
            if len(files) == 2 and all(len(rows(f)) >= 10 for f in files):
                node_id = rows(files[0])[-1]["node_id"]
                (node,) = [w for w in workers if w.node_id == node_id]
                cluster.remove_node(node)  # its raylet and workers die with it
                killed.append(node_id)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=remove_a_busy_node)
    killer.start()
    try:
        outcome = run_search(
            spec,
            RunOptions(
                storage=Storage(storage), name="nodes", address=cluster.address, max_failures=2
            ),
            echo=lambda _: None,
        )
    finally:
        killer.join()
        cluster.shutdown()

    assert killed, "no node was removed"
    assert {r.end for r in outcome.trials.values()} == {"completed"}
    first_nodes, moved = set(), 0
    for result_file in storage.glob("nodes/trial_*/result.json"):
        trial_rows = rows(result_file)
        assert [r["training_iteration"] for r in trial_rows][-1] == 150
        first_nodes.add(trial_rows[0]["node_id"])
        if trial_rows[0]["node_id"] == killed[0]:  # the trial that lost its node
            moved += 1
            assert trial_rows[-1]["node_id"] != killed[0]
            assert trial_rows[-1]["iterations_since_restore"] < 150  # resumed, not restarted
    assert len(first_nodes) == 2 and moved == 1  # spread over two nodes; one moved
    client = MlflowClient(tracking_uri=f"sqlite:///{storage / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("nodes")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in runs)
