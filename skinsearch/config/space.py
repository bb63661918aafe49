"""A validated spec -> the concrete trial configurations it describes (pure; no Ray).

For the ``grid`` and ``random`` samplers the whole space is expanded here, seeded, into a list of
flat configurations: ``validate`` counts it, ``--max-trials`` picks from it, and the tuner hands it
to Tune as is. ``tpe`` samples adaptively, so only its domains are described here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from skinsearch.config.hparams import COMMON_HPARAMS
from skinsearch.config.params import Param
from skinsearch.config.spec import SearchSpec
from skinsearch.errors import SpecError
from skinsearch.models import hparams_class, model_hparams
from skinsearch.models._registry import input_size_problem, weights_problem

Config = dict[str, Any]
MAX_CONFIGS = 100_000  # the most configurations a grid or random space may list up front


def model_hparam_names(model: str) -> list[str]:
    """The hyperparameters ``model`` takes, in ``HParams`` order (``seed`` last)."""
    allowed = COMMON_HPARAMS | model_hparams(model)
    fields = hparams_class(model).model_fields
    return [name for name in fields if name in allowed and name != "seed"] + ["seed"]


def domains(spec: SearchSpec) -> dict[str, Param]:
    """Every hyperparameter's domain: the spec's, or a fixed default for the ones it leaves out."""
    out, fields = {}, hparams_class(spec.model).model_fields
    for name in model_hparam_names(spec.model):
        if name == "seed":
            continue
        default = fields[name].get_default(call_default_factory=True)
        out[name] = spec.params.get(name) or Param(kind="fixed", values=(default,))
    return out


def num_trials(spec: SearchSpec) -> int:
    """How many trials the spec runs: grid combinations x num_samples, or num_samples."""
    if spec.search.sampler != "grid":
        return spec.search.num_samples
    grids = [len(p.values) for p in spec.params.values() if p.kind == "grid"]
    return math.prod(grids) * spec.search.num_samples


def expand(spec: SearchSpec) -> list[Config]:
    """All trial configurations of a ``grid`` or ``random`` spec, reproducible from its seed.

    Each configuration is flat and complete (every hyperparameter the model takes, plus a
    per-trial ``seed``), so it can be logged and re-run as it stands.
    """
    if spec.search.sampler == "tpe":
        raise ValueError("tpe configurations are sampled during the search, not up front")
    rng = np.random.default_rng(spec.search.seed)
    doms = domains(spec)
    configs = []
    for index, fixed in enumerate(_grid_points(spec, doms)):
        config: Config = {}
        for name, param in doms.items():
            config[name] = fixed[name] if name in fixed else sample(param, rng)
        config["seed"] = spec.search.seed + index
        configs.append(config)
    return configs


def pick(configs: list[Config], count: int, seed: int) -> list[Config]:
    """A seeded, order-preserving subset of ``count`` configurations (``--max-trials``)."""
    if count >= len(configs):
        return configs
    chosen = np.random.default_rng(seed).choice(len(configs), size=count, replace=False)
    return [configs[i] for i in sorted(chosen)]


def sample(param: Param, rng: np.random.Generator) -> Any:
    """One value from a domain; floats are rounded to 4 significant digits for readable logs."""
    if param.kind == "fixed":
        return param.values[0]
    if param.kind in ("grid", "choice"):
        return param.values[int(rng.integers(len(param.values)))]
    if param.kind == "randint":
        return int(rng.integers(int(param.low), int(param.high) + 1))
    if param.kind == "uniform":
        return _round(rng.uniform(param.low, param.high))
    return _round(math.exp(rng.uniform(math.log(param.low), math.log(param.high))))


def input_sizes(spec: SearchSpec) -> list[int]:
    """Every input size the search can use (images are decoded once for each)."""
    return sorted({int(v) for v in domains(spec)["input_size"].values})


def check_space(spec: SearchSpec, source: str = "<spec>") -> None:
    """Reject a space too large to list up front, and input sizes the model cannot take with
    any architecture the space can pick.

    Raises:
        SpecError: naming the grid keys, or the input size and the architecture that does not
            fit.
    """
    _check_size(spec, source)
    doms = domains(spec)
    # the hyperparameters that decide which input sizes fit and which weights are read
    arch = [n for n in ("channels", "pretrained") if n in doms and doms[n].is_discrete]
    problems = []
    for values in itertools.product(*(doms[n].values for n in arch)):
        hp = hparams_class(spec.model)(**dict(zip(arch, values, strict=True)))
        what = ", ".join(f"{n} {v}" for n, v in zip(arch, values, strict=True) if n == "channels")
        for size in input_sizes(spec):
            needs = input_size_problem(spec.model, hp, size)
            if needs:
                small = needs.startswith("needs >=")
                why = ": each conv block halves the image" if small and what else ""
                problems.append(
                    f"{source}: params.input_size: {size} "
                    f"{'is too small for' if small else 'does not suit'} {spec.model}"
                    f"{' with ' + what if what else ''} ({needs}{why})"
                )
        if problem := weights_problem(spec.model, hp):
            problems.append(f"{source}: params.{problem}")
    if problems:
        raise SpecError(*dict.fromkeys(problems))


def _check_size(spec: SearchSpec, source: str) -> None:
    # grid and random spaces are listed whole before the search starts (validate counts them,
    # --max-trials picks from them): a billion configurations would fill the memory first
    count = num_trials(spec)
    if spec.search.sampler != "grid" or count <= MAX_CONFIGS:
        return  # num_samples itself is capped at MAX_CONFIGS by the spec
    grid = " x ".join(f"{n} ({len(p.values)})" for n, p in spec.params.items() if p.kind == "grid")
    raise SpecError(
        f"{source}: params: the grid has {count} configurations ({grid} x num_samples "
        f"{spec.search.num_samples}), more than the {MAX_CONFIGS} skinsearch lists before a "
        "search; use search: {sampler: random, num_samples: N} to draw N of them, or fewer "
        "grid values"
    )


def describe(doms: dict[str, Param]) -> Iterator[str]:
    """Lines describing each hyperparameter's domain, searched ones first."""
    width = max(map(len, doms))
    searched = [n for n, p in doms.items() if p.kind != "fixed"]
    for name in searched + [n for n in doms if n not in searched]:
        yield f"{name:<{width}}  {doms[name].describe()}"


def _grid_points(spec: SearchSpec, doms: dict[str, Param]) -> Iterator[Config]:
    if spec.search.sampler == "random":
        yield from ({} for _ in range(spec.search.num_samples))
        return
    grid = {n: p.values for n, p in doms.items() if p.kind == "grid"}
    for _ in range(spec.search.num_samples):
        for values in itertools.product(*grid.values()):
            yield dict(zip(grid, values, strict=True))


def _round(value: float) -> float:
    return float(f"{value:.4g}")
