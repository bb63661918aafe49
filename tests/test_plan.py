"""The plan a spec compiles to: what a search runs, the codec that carries list values through
Tune, and the confirmation a ``confirm:`` block asks for."""

from __future__ import annotations

from skinsearch.config.objective import Objective
from skinsearch.config.plan import ConfirmPlan, SearchPlan
from tests.conftest import spec_of
from tests.test_space import GRID as SPACE_GRID

GRID = SPACE_GRID + "  input_size: {choice: [32, 48]}\n"


def test_list_options_round_trip_through_tune_encoding() -> None:
    from skinsearch.config.plan import decode, encode, list_hparams

    assert list_hparams() == {"hidden_sizes", "channels"}  # read from HParams' list fields
    assert encode({"channels": [16, 32], "lr": 0.1}) == {"channels": "16-32", "lr": 0.1}
    assert decode({"channels": "16-32", "hidden_sizes": "8", "lr": 0.1}) == {
        "channels": [16, 32],
        "hidden_sizes": [8],
        "lr": 0.1,
    }


def test_a_plan_is_compiled_once_with_what_the_search_runs() -> None:
    from skinsearch.config.plan import SearchPlan

    spec = spec_of(GRID)
    plan = SearchPlan.compile(spec, max_trials=5)
    assert plan.space_trials == 12 and plan.trials == 5 and len(plan.configs or []) == 5
    assert set(plan.searched) <= set(plan.domains) and not set(plan.searched) & set(plan.fixed)
    assert plan.input_sizes == tuple(sorted({c["input_size"] for c in plan.configs or []}))
    assert all(not set(c) & set(plan.fixed) for c in plan.tune_configs())
    config = plan.tune_configs()[0]
    assert plan.trial_config(config) == {**plan.fixed, **(plan.configs or [])[0]}


def test_a_confirmation_tpe_search_and_its_sizes_come_from_the_plan() -> None:
    tpe = SearchPlan.compile(
        spec_of(
            "search: {sampler: tpe, num_samples: 9}\nparams:\n  input_size: {choice: [32, 64]}\n"
        ),
        max_trials=4,
    )
    assert tpe.configs is None and tpe.trials == 4 and tpe.input_sizes == (32, 64)
    # a confirmation's configurations are run as given: only their sizes are decoded
    chosen = [{"input_size": 48, "lr": 0.01, "seed": 1000}, {"input_size": 48, "seed": 2000}]
    plan = SearchPlan.compile(spec_of(GRID), configs=chosen)
    assert plan.trials == 2 and plan.input_sizes == (48,) and plan.configs == chosen
    assert plan.objective == Objective("val_acc", "max") and plan.confirm is None


def test_the_confirm_block_compiles_to_a_confirm_plan() -> None:
    spec = spec_of(
        "train: {metric: val_balanced_acc}\nconfirm: {top: 3, seeds: 2, folds: 5}\n" + GRID
    )
    confirm = SearchPlan.compile(spec).confirm
    assert confirm == ConfirmPlan(3, 2, "val_balanced_acc", "max", 5)
    assert confirm.objective == Objective("val_balanced_acc", "max")
    assert confirm.runs(24) == 3 * 2 * 5 and confirm.runs(2) == 2 * 2 * 5  # top 3 of only 2
    assert confirm.runs_text() == "2 seeds × 5 folds of train+val"
    assert ConfirmPlan(3, 1, "val_acc", "max", 5).runs_text() == "5 folds of train+val"
    assert ConfirmPlan(3, 1, "val_acc", "max").runs_text() == "1 seed"
