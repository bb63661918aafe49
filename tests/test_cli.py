"""The command line through click's CliRunner: output, exit codes, no tracebacks for user errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from skinsearch.cli import main
from tests.conftest import SEARCH_SPACES


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("file", "line"),
    [
        ("mlp.yaml", "88 trials"),
        ("cnn.yaml", "75 trials"),
        ("quick.yaml", "32 trials"),
        (
            "cnn_plus.yaml",
            "then confirm: the top 3 by val_balanced_acc retrained over 3 seeds each (9 runs)",
        ),
        (
            "pretrained.yaml",
            "then confirm: the top 1 by val_balanced_acc retrained over 3 seeds each (3 runs)",
        ),
        # the pilots docs/RESULTS.md reports
        ("../docs/experiments/cnn_plus_winner_no_patience.yaml", "1 trial"),
        ("../docs/experiments/cnn_plus_winner_96px_bf16.yaml", "3 trials"),
        ("../docs/experiments/cnn_plus_winner_rotate90.yaml", "3 trials"),
        ("../docs/experiments/cnn_plus_winner_shades_of_gray.yaml", "3 trials"),
        ("../docs/experiments/pretrained_recipe_freeze_5.yaml", "1 trial"),
        ("../docs/experiments/pretrained_recipe_backbone_0.1.yaml", "1 trial"),
        ("../docs/experiments/pretrained_recipe_l2sp_30.yaml", "1 trial"),
        ("../docs/experiments/pretrained_recipe_lite1.yaml", "1 trial"),
        ("../docs/experiments/pretrained_recipe_unweighted.yaml", "1 trial"),
        ("../docs/experiments/pretrained_recipe_12_epochs.yaml", "1 trial"),
        ("../docs/experiments/pretrained_recipe_shades_of_gray.yaml", "1 trial"),
    ],
)
def test_validate_prints_the_space_and_its_trial_count(file: str, line: str) -> None:
    code, out = invoke("validate", str(SEARCH_SPACES / file))
    assert code == 0
    assert out.strip().splitlines()[-1] == line
    assert "params:" in out and "lr" in out


def test_validate_says_when_runs_never_stop_early() -> None:
    code, out = invoke("validate", str(SEARCH_SPACES / "cnn_plus.yaml"))
    assert code == 0
    assert "train: up to 60 epochs, no early stopping, val_balanced_acc (max)" in out
    code, out = invoke("validate", str(SEARCH_SPACES / "quick.yaml"))
    assert ", patience " in out and "None" not in out


def test_data_on_the_command_line_keeps_the_files_other_data_settings(tmp_path: Path) -> None:
    from skinsearch.config.spec import load_spec, with_overrides

    spec = load_spec(SEARCH_SPACES / "../docs/experiments/cnn_plus_winner_shades_of_gray.yaml")
    overridden = with_overrides(spec, str(tmp_path), None).data
    assert overridden.path == str(tmp_path.resolve())
    assert overridden.colour_constancy == "shades_of_gray"


def test_seed_on_the_command_line_replaces_only_the_files_search_seed() -> None:
    from skinsearch.config.spec import load_spec, with_overrides

    spec = load_spec(SEARCH_SPACES / "pretrained.yaml")
    seeded = with_overrides(spec, None, None, 2011)
    assert seeded.search.seed == 2011 and spec.search.seed == 0
    assert seeded.search.sampler == spec.search.sampler == "grid"
    assert seeded.train == spec.train and seeded.params == spec.params


@pytest.mark.slow
def test_a_run_with_seed_seeds_its_trials_and_resumes_only_with_the_same_seed(
    tiny_images: Path, tmp_path: Path
) -> None:
    import json

    from skinsearch.store.searches import load_search

    space = tmp_path / "seeded.yaml"
    space.write_text(
        f"name: seeded\nmodel: mlp\ndata: {{path: {tiny_images}}}\ntrain: {{max_epochs: 1}}\n"
        "scheduler: none\nparams: {lr: {grid: [0.001, 0.01]}}\n"
    )
    storage = tmp_path / "r"
    code, out = invoke(
        "run", str(space), "--storage", str(storage), "--cpus", "2", "--seed", "1011"
    )
    assert code == 0, out
    assert load_search(storage / "seeded").spec.search.seed == 1011
    trials = (storage / "seeded").glob("trial_*/params.json")
    assert sorted(json.loads(p.read_text())["seed"] for p in trials) == [1011, 1012]
    code, out = invoke("run", str(space), "--storage", str(storage), "--resume")
    assert code == 2
    assert out.strip().splitlines()[-1] == (
        f"Error: --resume: {space} (search) differs from the search 'seeded' was started with; "
        "resume with the same file and options, or start a new search without --resume"
    )


def test_validate_does_not_start_ray() -> None:
    import ray

    invoke("validate", str(SEARCH_SPACES / "cnn.yaml"))
    assert not ray.is_initialized()


def test_a_bad_file_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nmodel: mlp\nparams:\n  dropout: {grid: [0, 0.2, 1.5]}\n  lr: -1\n")
    code, out = invoke("validate", str(bad))
    assert code == 2
    assert out.splitlines() == [
        f"Error: {bad}: params.dropout.grid[2]: must be < 1, got 1.5",
        f"Error: {bad}: params.lr: must be > 0, got -1",
    ]
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.yaml"], "Error: missing.yaml: no such file"),
        (
            ["run", str(SEARCH_SPACES / "quick.yaml"), "--gpus", "64"],
            "Error: --gpus 64: this machine has 0 GPU(s); pass --gpus 0 or fewer",
        ),
        (
            ["run", str(SEARCH_SPACES / "quick.yaml"), "--data", "builtin:cifar"],
            "Error: --data: unknown built-in data set 'builtin:cifar' (valid: builtin:synthetic, builtin:synthetic_table)",
        ),
        (
            ["run", str(SEARCH_SPACES / "quick.yaml"), "--storage", "/proc/skinsearch"],
            "Error: --storage: cannot write to /proc/skinsearch",
        ),
        (
            ["run", str(SEARCH_SPACES / "quick.yaml"), "--address", "127.0.0.1:1"],
            "Error: --address 127.0.0.1:1: no Ray cluster answers there (Connection refused); "
            "start one with `ray start --head` or leave out --address",
        ),
        (
            ["run", str(SEARCH_SPACES / "quick.yaml"), "--address", "nowhere"],
            "Error: --address nowhere: expected auto, host:port or ray://host:port",
        ),
        (
            ["best", "--storage", "{tmp}/empty"],
            "Error: no search under {tmp}/empty; run `skinsearch run FILE` first or pass --storage",
        ),
        (
            ["predict", "{tmp}", "x.jpg"],
            "Error: {tmp} is not a skinsearch bundle (no config.yaml); export one with `skinsearch best --export DIR`",
        ),
    ],
)
def test_user_errors_are_one_line_with_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    if "--gpus" in args:
        import torch

        if torch.cuda.device_count() >= 64:
            pytest.skip("this machine has 64 GPUs")
    code, out = invoke(*[a.format(tmp=tmp_path) for a in args])
    assert code == 2
    assert out.startswith(message.format(tmp=tmp_path))
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out


def test_a_missing_data_folder_is_reported_before_ray_starts(tmp_path: Path) -> None:
    import ray

    code, out = invoke(
        "run",
        str(SEARCH_SPACES / "quick.yaml"),
        "--data",
        str(tmp_path / "nowhere"),
        "--storage",
        str(tmp_path / "results"),
    )
    assert code == 2
    assert out.splitlines()[-1] == (
        f"Error: data.path: {tmp_path / 'nowhere'} is not a folder "
        "(point data.path or --data at a folder of class folders)"
    )
    assert not ray.is_initialized()


def test_python_dash_m_runs_the_cli() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "skinsearch", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip().startswith("skinsearch, version ")


def test_a_taken_default_name_is_numbered_and_a_taken_explicit_name_is_an_error(
    tmp_path: Path,
) -> None:
    from skinsearch.errors import SkinsearchError
    from skinsearch.store.searches import new_search_name as _search_name
    from skinsearch.store.storage import Storage

    storage = Storage(tmp_path)
    assert _search_name(storage, "quick", explicit=False) == "quick"
    assert (tmp_path / "quick").is_dir()  # claimed: a search started next cannot take it too
    (tmp_path / "quick-2").mkdir()
    assert _search_name(storage, "quick", explicit=False) == "quick-3"
    with pytest.raises(SkinsearchError, match="a search named 'quick' already exists"):
        _search_name(storage, "quick", explicit=True)


@pytest.mark.slow
def test_a_trial_bigger_than_ray_is_an_error_not_a_hang(tiny_images: Path, tmp_path: Path) -> None:
    import ray

    space = tmp_path / "big.yaml"
    space.write_text(
        f"name: big\nmodel: mlp\ndata: {{path: {tiny_images}}}\nresources: {{cpus_per_trial: 4}}\n"
    )
    code, out = invoke("run", str(space), "--storage", str(tmp_path / "r"), "--cpus", "2")
    assert code == 2
    assert out.strip().splitlines()[-1] == (
        "Error: resources.cpus_per_trial: 4 is more than the 2 CPUs Ray has; "
        "lower it, or give Ray more with --cpus"
    )
    assert not ray.is_initialized()
