"""Spec -> trial configurations: counts, determinism, seeded picks, TPE encodings."""

from __future__ import annotations

from pathlib import Path

from skinsearch.config import space
from skinsearch.config.hparams import HParams
from tests.conftest import cli, spec_of

GRID = """
search: {sampler: grid, num_samples: 2, seed: 7}
params:
  lr: {grid: [0.001, 0.01]}
  batch_size: {grid: [16, 32, 64]}
  dropout: {uniform: [0.0, 0.5]}
  optimizer: {choice: [adam, sgd]}
  channels: {choice: [[16], [16, 32]]}
"""


def test_grid_is_the_cartesian_product_times_num_samples() -> None:
    configs = space.expand(spec_of(GRID))
    assert len(configs) == space.num_trials(spec_of(GRID)) == 12
    pairs = [(c["lr"], c["batch_size"]) for c in configs[:6]]
    assert sorted(pairs) == sorted((lr, bs) for lr in (0.001, 0.01) for bs in (16, 32, 64))
    assert [c["seed"] for c in configs] == list(range(7, 19))


def test_expansion_is_reproducible_and_valid() -> None:
    first, again = space.expand(spec_of(GRID)), space.expand(spec_of(GRID))
    assert first == again
    for config in first:
        hp = HParams.model_validate(config)
        assert 0.0 <= hp.dropout <= 0.5
        assert hp.channels in ([16], [16, 32])
    assert len({c["dropout"] for c in first}) > 1


def test_random_sampler_draws_grid_values_as_choices() -> None:
    spec = spec_of(GRID.replace("sampler: grid, num_samples: 2", "sampler: random, num_samples: 5"))
    configs = space.expand(spec)
    assert len(configs) == space.num_trials(spec) == 5
    assert all(c["batch_size"] in (16, 32, 64) for c in configs)


def test_configs_hold_every_hyperparameter_of_the_model_only() -> None:
    config = space.expand(spec_of(GRID))[0]
    assert set(config) == set(space.model_hparam_names("cnn"))
    assert "hidden_sizes" not in config and config["fc_size"] == 128


def test_pick_is_seeded_and_keeps_order() -> None:
    configs = space.expand(spec_of(GRID))
    picked = space.pick(configs, 4, seed=1)
    assert picked == space.pick(configs, 4, seed=1)
    assert len(picked) == 4
    assert [configs.index(c) for c in picked] == sorted(configs.index(c) for c in picked)
    assert space.pick(configs, 100, seed=1) == configs


def test_ranges_stay_in_bounds() -> None:
    spec = spec_of(
        "search: {sampler: random, num_samples: 200}\nparams:\n"
        "  lr: {loguniform: [1e-4, 1e-2]}\n  batch_size: {randint: [16, 18]}\n"
    )
    configs = space.expand(spec)
    assert all(1e-4 <= c["lr"] <= 1e-2 for c in configs)
    assert {c["batch_size"] for c in configs} == {16, 17, 18}


def test_input_sizes_are_the_discrete_values() -> None:
    assert space.input_sizes(spec_of("params:\n  input_size: {choice: [64, 32, 64]}\n")) == [32, 64]


def test_a_space_too_large_to_list_is_one_line_naming_the_grid(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from skinsearch.cli import main

    grid = "\n".join(
        f"  {name}: {{grid: [{', '.join(str(i / 100) for i in range(10))}]}}"
        for name in ("dropout", "weight_decay", "momentum", "hflip", "vflip", "rotate90")
    )
    file = tmp_path / "huge.yaml"
    file.write_text(f"name: huge\nmodel: mlp\ndata: {{path: {tmp_path}}}\nparams:\n{grid}\n")
    result = CliRunner().invoke(main, ["validate", str(file)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {file}: params: the grid has 1000000 ")
    assert "dropout (10) x weight_decay (10)" in lines[0] and "more than the 100000" in lines[0]
    assert "sampler: random, num_samples: N" in lines[0]
    file.write_text(
        f"name: huge\nmodel: mlp\ndata: {{path: {tmp_path}}}\n"
        "search: {sampler: random, num_samples: 200000}\nparams:\n  lr: {loguniform: [0.001, 0.1]}\n"
    )
    result = CliRunner().invoke(main, ["validate", str(file)])
    assert result.exit_code == 2 and "search.num_samples: must be <= 100000" in result.output


def test_settings_that_do_less_than_they_seem_get_a_note(tmp_path: Path) -> None:
    file = tmp_path / "notes.yaml"
    file.write_text(
        f"name: notes\nmodel: mlp\ndata: {{path: {tmp_path}}}\n"
        "train: {max_epochs: 5, patience: 5}\nscheduler: {type: asha, grace_period: 8}\n"
        "params:\n  lr: {grid: [0.001, 0.01]}\n"
    )
    result = cli(["validate", str(file)])
    assert "note: train.patience 5 >= max_epochs 5: early stopping never triggers" in result.output
    assert "note: scheduler.grace_period 8 >= train.max_epochs 5: ASHA stops no trial early" in (
        result.output
    )
