"""Search-space validation: shipped files, good files, and bad files with their exact messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from skinsearch.config import space
from skinsearch.config.spec import DataSpec, load_spec
from skinsearch.errors import SpecError
from tests.conftest import SEARCH_SPACES

BASE = "name: t\nmodel: {model}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        spec = load_spec(path)
        space.check_space(spec, str(path))
    return [p.removeprefix(f"{path}: ").removeprefix(f"{path}:") for p in info.value.problems]


@pytest.mark.parametrize(
    ("file", "trials"), [("quick.yaml", 32), ("mlp.yaml", 88), ("cnn.yaml", 75)]
)
def test_shipped_spaces_validate_with_their_trial_counts(file: str, trials: int) -> None:
    spec = load_spec(SEARCH_SPACES / file)
    space.check_space(spec)
    assert space.num_trials(spec) == trials
    assert len(space.expand(spec)) == trials


def test_defaults_fill_a_minimal_file(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE.format(model="mlp")))
    assert spec.data.path == "builtin:synthetic"
    assert spec.train.metric == "val_acc" and spec.train.resolved_mode == "max"
    assert spec.scheduler.type == "asha"
    assert space.num_trials(spec) == 1


def test_every_param_form_is_accepted(tmp_path: Path) -> None:
    text = BASE.format(model="mlp") + (
        "params:\n"
        "  lr: {loguniform: [1e-4, 1e-2]}\n"
        "  dropout: {uniform: [0, 0.5]}\n"
        "  batch_size: {randint: [16, 64]}\n"
        "  optimizer: {choice: [adam, sgd]}\n"
        "  hidden_sizes: {grid: [[64], [128, 64]]}\n"
        "  weight_decay: 5e-4\n"
        "search: {sampler: grid, num_samples: 3}\n"
        "scheduler: none\n"
        "train: {metric: val_loss}\n"
    )
    spec = load_spec(write(tmp_path, text))
    assert spec.params["weight_decay"].values == (5e-4,)
    assert spec.scheduler.type == "none"
    assert spec.train.resolved_mode == "min"
    assert space.num_trials(spec) == 6


BAD = [
    ("model: mlp\n", ["name: required"]),
    (
        BASE.format(model="vgg"),
        [
            "model: unknown model 'vgg' (valid: cnn, efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, mlp)"
        ],
    ),
    (
        BASE.format(model="mlp") + "epochs: 3\n",
        [
            "epochs: unknown key (valid: name, model, data, train, search, scheduler, resources, confirm, params)"
        ],
    ),
    (
        BASE.format(model="mlp") + "train: {max_epochs: ten}\n",
        ["train.max_epochs: must be an integer, got 'ten'"],
    ),
    (
        BASE.format(model="mlp") + "train: {max_epochs: 0}\n",
        ["train.max_epochs: must be >= 1, got 0"],
    ),
    (
        BASE.format(model="mlp") + "train: {metric: accuracy}\n",
        [
            "train.metric: unknown metric 'accuracy' (valid: val_acc, val_balanced_acc, val_macro_f1, val_auc, "
            "val_loss, train_acc, train_loss, val_recall_<class>)"
        ],
    ),
    (
        BASE.format(model="mlp") + "search: {sampler: bayes}\n",
        ["search.sampler: must be one of 'grid', 'random' or 'tpe', got 'bayes'"],
    ),
    (
        BASE.format(model="mlp") + "scheduler: {type: hyperband}\n",
        ["scheduler.type: must be one of 'asha' or 'none', got 'hyperband'"],
    ),
    (
        BASE.format(model="mlp") + "scheduler: {type: asha, reduction_factor: 1}\n",
        ["scheduler.reduction_factor: must be > 1, got 1"],
    ),
    (
        BASE.format(model="mlp") + "resources: {gpus_per_trial: -1}\n",
        ["resources.gpus_per_trial: must be >= 0, got -1"],
    ),
    (BASE.format(model="mlp") + "confirm: {top: 0}\n", ["confirm.top: must be >= 1, got 0"]),
    (
        BASE.format(model="mlp") + "data: {colour_constancy: grey_world}\n",
        ["data.colour_constancy: must be one of 'none' or 'shades_of_gray', got 'grey_world'"],
    ),
    (
        BASE.format(model="mlp") + "confirm: {top: 3, seeds: 1}\n",
        [
            "confirm: seeds: 1 without folds retrains each configuration once; use seeds: 2 or more, or add folds: 5"
        ],
    ),
    (
        BASE.format(model="mlp") + "confirm: {top: 3, fold: 5}\n",
        ["confirm.fold: unknown key (valid: top, seeds, folds)"],
    ),
    (BASE.format(model="mlp") + "confirm: {folds: 1}\n", ["confirm.folds: must be >= 2, got 1"]),
    (
        BASE.format(model="mlp") + "data: {path: 'builtin:imagenet'}\n",
        [
            "data.path: unknown built-in data set 'builtin:imagenet' (valid: builtin:synthetic, builtin:synthetic_table)"
        ],
    ),
    (
        BASE.format(model="mlp") + "params:\n  dropout: {grid: [0, 0.2, 1.5]}\n",
        ["params.dropout.grid[2]: must be < 1, got 1.5"],
    ),
    (BASE.format(model="mlp") + "params:\n  lr: 0\n", ["params.lr: must be > 0, got 0"]),
    (
        BASE.format(model="mlp") + "params:\n  lr: {loguniform: [0, 0.1]}\n",
        ["params.lr.loguniform[0]: must be > 0 for a log scale, got 0"],
    ),
    (
        BASE.format(model="mlp") + "params:\n  lr: {uniform: [0.1, 0.01]}\n",
        ["params.lr.uniform: low must be < high, got [0.1, 0.01]"],
    ),
    (
        BASE.format(model="mlp") + "params:\n  batch_size: {grid: []}\n",
        ["params.batch_size.grid: must be a non-empty list of values, got an empty list"],
    ),
    (
        BASE.format(model="mlp") + "params:\n  batch_size: {grid: [16, 0]}\n",
        ["params.batch_size.grid[1]: must be >= 1, got 0"],
    ),
    (
        BASE.format(model="mlp") + "params:\n  batch_size: 32.5\n",
        ["params.batch_size: must be an integer, got 32.5"],
    ),
    (
        BASE.format(model="mlp") + "params:\n  batch_size: [16, 32]\n",
        [
            "params.batch_size: expected a single value, got a list (write `grid: [...]` or `choice: [...]` to search over values)"
        ],
    ),
    (
        BASE.format(model="mlp") + "params:\n  batch_size: {uniform: [16, 32]}\n",
        ["params.batch_size.uniform: batch_size is an integer; use randint, grid or choice"],
    ),
    (
        BASE.format(model="mlp") + "params:\n  lr: {randint: [1, 3]}\n",
        [
            "params.lr.randint: randint is for integer hyperparameters; use uniform or loguniform for lr"
        ],
    ),
    (
        BASE.format(model="mlp") + "params:\n  optimizer: {choice: [adam, rmsprop]}\n",
        ["params.optimizer.choice[1]: must be one of 'adam', 'adamw' or 'sgd', got 'rmsprop'"],
    ),
    (
        BASE.format(model="mlp") + "params:\n  lr: {normal: [0, 1]}\n",
        [
            "params.lr: expected a value or one key of grid, choice, uniform, loguniform, randint, got keys: normal"
        ],
    ),
    (
        BASE.format(model="mlp") + "params:\n  momentun: 0.9\n",
        [
            "params.momentun: unknown hyperparameter (valid for mlp: activation, affine, batch_size, batchnorm, colour, "
            "dropout, ema, hflip, hidden_sizes, init, input_size, lr, momentum, optimizer, rbcontrast, rotate90, "
            "schedule, vflip, warmup_epochs, weight_decay)"
        ],
    ),
    (
        BASE.format(model="mlp") + "params:\n  channels: [32, 64]\n",
        [
            "params.channels: not a hyperparameter of model 'mlp' (it takes: activation, affine, batch_size, batchnorm, "
            "colour, dropout, ema, hflip, hidden_sizes, init, input_size, lr, momentum, optimizer, rbcontrast, rotate90, "
            "schedule, vflip, warmup_epochs, weight_decay)"
        ],
    ),
    (
        BASE.format(model="cnn") + "params:\n  channels: {grid: [[16, 32], [16, -1]]}\n",
        ["params.channels.grid[1][1]: must be >= 1, got -1"],
    ),
    (
        BASE.format(model="cnn") + "params:\n  input_size: {randint: [32, 64]}\n",
        [
            "params.input_size: must be a value, grid or choice, not a range (images are decoded once per input size)"
        ],
    ),
    (
        BASE.format(model="cnn") + "params:\n  input_size: 8\n  channels: [16, 32, 64, 128]\n",
        [
            "params.input_size: 8 is too small for cnn with channels [16, 32, 64, 128] (needs >= 16: each conv block halves the image)"
        ],
    ),
    (
        BASE.format(model="mlp") + "params:\n  init: orthogonal\n",
        ["params.init: must be one of 'default', 'he', 'xavier' or 'uniform', got 'orthogonal'"],
    ),
    (
        BASE.format(model="mlp") + "params:\n  batchnorm: maybe\n",
        ["params.batchnorm: must be true or false, got 'maybe'"],
    ),
    (
        "name: t\nmodel: mlp\nparams:\n  lr: 1e-3\n  lr: 2e-3\n",
        ["5:3: invalid YAML: key 'lr' appears twice in one mapping"],
    ),
    ("name: t\nmodel: [mlp\n", ["3:1: invalid YAML: expected ',' or ']', but got '<stream end>'"]),
    ("- just\n- a list\n", ["expected a mapping of sections (name, model, data, ...), got a list"]),
    (
        "name: 'my search/1'\nmodel: mlp\n",
        [
            "name: must be letters, digits, '.', '_' or '-' (usable as a folder name), got 'my search/1'"
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[e[0] for _, e in BAD])
def test_bad_files_give_one_located_line_each(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    assert problems(tmp_path, text) == expected


def test_a_confirm_block_defaults_to_three_seeds_or_one_with_folds(tmp_path: Path) -> None:
    seeds = load_spec(write(tmp_path, BASE.format(model="mlp") + "confirm: {top: 2}\n"))
    folds = load_spec(write(tmp_path, BASE.format(model="mlp") + "confirm: {folds: 5}\n"))
    assert seeds.confirm is not None and folds.confirm is not None
    assert (seeds.confirm.top, seeds.confirm.resolved_seeds, seeds.confirm.folds) == (2, 3, None)
    assert (folds.confirm.top, folds.confirm.resolved_seeds, folds.confirm.folds) == (3, 1, 5)
    assert "confirm" not in load_spec(write(tmp_path, BASE.format(model="mlp"))).to_yaml_dict()


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    text = BASE.format(model="mlp") + "train: {patience: 0}\nparams:\n  lr: -1\n  dropout: 2\n"
    assert problems(tmp_path, text) == [
        "train.patience: must be >= 1, got 0",
        "params.lr: must be > 0, got -1",
        "params.dropout: must be < 1, got 2",
    ]


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "nope.yaml")
    assert info.value.problems == [f"{tmp_path / 'nope.yaml'}: no such file"]


def test_a_data_folder_is_recorded_as_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert DataSpec(path="images/isic").resolved().path == str(tmp_path / "images" / "isic")
    assert DataSpec(path="builtin:synthetic").resolved().path == "builtin:synthetic"
