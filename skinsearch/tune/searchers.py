"""A spec's sampler and scheduler as Tune's searcher, param space and scheduler.

``grid`` and ``random`` specs are expanded up front (``space.expand``) and handed to Tune as fixed
points to evaluate, so that every configuration is known, logged and reproducible before the
search starts; ``tpe`` lets Optuna sample each trial as results come in. ASHA, when asked for,
stops weak trials at its rungs, one epoch being one Tune iteration, judging each on its best epoch
so far unless ``scheduler.compare: last``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skinsearch._registry import Registry
from skinsearch.config.params import Param
from skinsearch.config.plan import SearchPlan, encode_value
from skinsearch.config.spec import SearchSpec

#: what every epoch's report holds beside its metrics: the trial's best value of train.metric so
#: far, which ASHA's rungs compare with ``scheduler.compare: best``
BEST_SO_FAR = "best_so_far"

#: ``scheduler.type`` -> the Tune scheduler it builds
SCHEDULERS: Registry[Callable[[SearchSpec], Any]] = Registry("scheduler")
#: ``search.sampler`` -> (the plan) -> the searcher, the param space Tune shows, and how many
#: trials to run
SEARCHERS: Registry[Callable[[SearchPlan], tuple[Any, dict[str, Any], int]]] = Registry("sampler")


@SCHEDULERS.register("none")
def _fifo(spec: SearchSpec) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()  # every trial runs until it ends itself


@SCHEDULERS.register("asha")
def _asha(spec: SearchSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration",  # one iteration is one epoch
        max_t=spec.train.max_epochs,
        grace_period=min(spec.scheduler.grace_period, spec.train.max_epochs),
        reduction_factor=spec.scheduler.reduction_factor,
    )


def compared_metric(spec: SearchSpec) -> str:
    """The reported value Tune judges a trial on, at ASHA's rungs and for the tpe sampler: its
    best epoch so far, or that epoch's own value of ``train.metric``."""
    return BEST_SO_FAR if spec.scheduler.compare == "best" else spec.train.metric


def scheduler(spec: SearchSpec) -> Any:
    """ASHA over epochs, or FIFO (every trial runs until it ends itself)."""
    return SCHEDULERS[spec.scheduler.type](spec)


def search_alg(plan: SearchPlan) -> tuple[Any, dict[str, Any], int]:
    """The searcher, the param space Tune shows, and how many trials to run (a plan with
    configurations, as a confirmation's: those, whatever the sampler)."""
    sampler = "grid" if plan.configs is not None else plan.spec.search.sampler
    return SEARCHERS[sampler](plan)


@SEARCHERS.register("tpe")
def _tpe(plan: SearchPlan) -> tuple[Any, dict[str, Any], int]:
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(seed=plan.spec.search.seed), _tpe_space(plan), plan.trials


@SEARCHERS.register("grid", "random")
def _listed(plan: SearchPlan) -> tuple[Any, dict[str, Any], int]:
    # the configurations were expanded up front (space.expand); Tune runs them as listed
    from ray.tune.search.basic_variant import BasicVariantGenerator

    searched = plan.tune_configs()
    return (
        BasicVariantGenerator(points_to_evaluate=searched),
        _describe_space(searched),
        len(searched),
    )


def _describe_space(configs: list[dict[str, Any]]) -> dict[str, Any]:
    # The configurations come from points_to_evaluate; the space only names their values, so
    # that Tune's tables and the experiment state describe what was searched.
    from ray import tune

    return {name: tune.choice(sorted({c[name] for c in configs}, key=str)) for name in configs[0]}


def _tpe_space(plan: SearchPlan) -> dict[str, Any]:
    from ray import tune

    def domain(param: Param) -> Any:
        if param.kind in ("grid", "choice"):
            return tune.choice([encode_value(v) for v in param.values])
        if param.kind == "uniform":
            return tune.uniform(param.low, param.high)
        if param.kind == "loguniform":
            return tune.loguniform(param.low, param.high)
        return tune.randint(int(param.low), int(param.high) + 1)  # Tune's upper bound is exclusive

    out = {name: domain(p) for name, p in plan.domains.items() if p.kind != "fixed"}
    out["seed"] = plan.spec.search.seed
    return out
