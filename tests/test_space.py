"""Spec -> trial configurations: counts, determinism, seeded picks, TPE encodings."""

from __future__ import annotations

from skinsearch.config import space
from skinsearch.config.hparams import HParams
from skinsearch.config.spec import SearchSpec, loads_spec


def spec_of(text: str) -> SearchSpec:
    return loads_spec("name: t\nmodel: cnn\n" + text)


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


def test_list_options_round_trip_through_tune_encoding() -> None:
    assert space.encode_option([16, 32]) == "16-32"
    assert space.encode_option(0.1) == 0.1
    assert space.decode_config({"channels": "16-32", "lr": 0.1}) == {
        "channels": [16, 32],
        "lr": 0.1,
    }


def test_input_sizes_are_the_discrete_values() -> None:
    assert space.input_sizes(spec_of("params:\n  input_size: {choice: [64, 32, 64]}\n")) == [32, 64]
