"""A validated spec compiled once into what a search runs: ``SearchPlan``.

The tuner, the searchers, the trainable, the callbacks and the summary read the plan; none of
them re-derives a piece of it from the spec. The plan holds every hyperparameter's domain, the
fixed ones (kept out of Tune's config), the searched ones, the configurations a ``grid`` or
``random`` search runs (or the trial count of a ``tpe`` one), the input sizes to decode, the
objective, the confirmation after the search (``ConfirmPlan``), and the codec that carries list
values (``channels: [16, 32]``) through Tune.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skinsearch.config import space
from skinsearch.config.hparams import HParams
from skinsearch.config.objective import Objective
from skinsearch.config.params import Param
from skinsearch.config.spec import SearchSpec
from skinsearch.models import hparams_class, model_names

Config = dict[str, Any]


def list_hparams() -> set[str]:
    """The hyperparameters whose values are lists (``HParams``' list fields and every model's
    own): they travel through Tune as "16-32" strings, since Optuna's categorical values must be
    scalars and Tune walks list values as nested paths."""
    classes: list[type[HParams]] = [HParams, *(hparams_class(m) for m in model_names())]
    fields = {name: field for cls in classes for name, field in cls.model_fields.items()}
    return {n for n, f in fields.items() if getattr(f.annotation, "__origin__", None) is list}


def encode(config: Config) -> Config:
    """A configuration as Tune carries it: list values as strings."""
    return {k: encode_value(v) for k, v in config.items()}


def decode(config: Config) -> Config:
    """Undo ``encode``: the list-valued hyperparameters as lists of ints again."""
    out = dict(config)
    for name in list_hparams():
        if isinstance(out.get(name), str):
            out[name] = [int(v) for v in out[name].split("-")]
    return out


def encode_value(value: Any) -> Any:
    """A list value as Tune carries it ("16-32"); scalars unchanged."""
    return "-".join(str(v) for v in value) if isinstance(value, list | tuple) else value


@dataclass(frozen=True)
class ConfirmPlan:
    """How to confirm a search: the top ``k`` configurations by ``metric``, each run ``seeds``
    times (and, with ``folds``, once per k-fold split for each seed)."""

    k: int
    seeds: int
    metric: str
    mode: str
    folds: int | None = None

    @classmethod
    def from_spec(cls, spec: SearchSpec) -> ConfirmPlan | None:
        """The plan of a search file's ``confirm:`` block, by the search's own metric."""
        c = spec.confirm
        if c is None:
            return None
        return cls(c.top, c.resolved_seeds, spec.train.metric, spec.train.resolved_mode, c.folds)

    @property
    def objective(self) -> Objective:
        """The metric and direction the confirmation ranks by."""
        return Objective.of(self.metric, self.mode)

    def runs(self, configurations: int) -> int:
        """How many runs confirming ``configurations`` of them takes."""
        return min(self.k, configurations) * self.seeds * (self.folds or 1)

    def runs_text(self) -> str:
        """How each configuration is rerun, in words: "3 seeds", "5 folds of train+val", ..."""
        seeds = f"{self.seeds} seed{'s' if self.seeds != 1 else ''}"
        if not self.folds:
            return seeds
        folds = f"{self.folds} folds of train+val"
        return folds if self.seeds == 1 else f"{seeds} × {folds}"


@dataclass(frozen=True)
class SearchPlan:
    """What one search runs, compiled from its spec by ``SearchPlan.compile``."""

    spec: SearchSpec
    domains: dict[str, Param]  # every hyperparameter the model takes (but ``seed``)
    fixed: Config  # those with one value in the whole search
    searched: tuple[str, ...]  # those Tune varies, in the spec's order
    space_trials: int  # how many trials the whole space holds
    configs: list[Config] | None  # what a grid/random search runs, complete; None for tpe
    trials: int  # how many trials this search runs
    input_sizes: tuple[int, ...]  # the sizes its trials use: each is decoded once
    objective: Objective
    confirm: ConfirmPlan | None  # the file's ``confirm:`` block

    @classmethod
    def compile(
        cls,
        spec: SearchSpec,
        configs: list[Config] | None = None,
        max_trials: int | None = None,
    ) -> SearchPlan:
        """The plan of ``spec``: its own configurations (a seeded pick of ``max_trials`` of
        them), or exactly ``configs`` (a confirmation's)."""
        domains = space.domains(spec)
        if configs is None and spec.search.sampler != "tpe":
            configs = space.expand(spec)
            if max_trials is not None:
                configs = space.pick(configs, max_trials, spec.search.seed)
        if configs is None:
            trials = min(spec.search.num_samples, max_trials or spec.search.num_samples)
            sizes = space.input_sizes(spec)  # tpe samples as it goes: every size it may pick
        else:
            trials = len(configs)
            sizes = space.input_sizes(spec)  # unless every configuration names its own:
            if all("input_size" in c for c in configs):
                sizes = sorted({int(c["input_size"]) for c in configs})
        return cls(
            spec=spec,
            domains=domains,
            fixed={name: p.values[0] for name, p in domains.items() if p.kind == "fixed"},
            searched=tuple(name for name, p in spec.params.items() if p.kind != "fixed"),
            space_trials=space.num_trials(spec),
            configs=configs,
            trials=trials,
            input_sizes=tuple(sizes),
            objective=spec.train.objective,
            confirm=ConfirmPlan.from_spec(spec),
        )

    def tune_configs(self) -> list[Config]:
        """The configurations as Tune is handed them: without the fixed values, encoded."""
        assert self.configs is not None, "a tpe search has no configurations up front"
        return [encode({k: v for k, v in c.items() if k not in self.fixed}) for c in self.configs]

    def trial_config(self, tune_config: Config) -> Config:
        """A trial's whole configuration from what Tune gave it: decoded, with the fixed
        values (as MLflow logs it and ``HParams`` takes it)."""
        return {**self.fixed, **decode(tune_config)}
