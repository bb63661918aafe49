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
