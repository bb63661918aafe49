"""One hyperparameter's domain in a search-space file (``lr: {loguniform: [1e-4, 1e-2]}``,
``batch_size: {choice: [16, 32]}``, a plain value) and its parsing, checked value by value
against ``HParams``."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from skinsearch._messages import kind_of, message, short_number, shown
from skinsearch.config.hparams import COMMON_HPARAMS, DISCRETE_ONLY, HParams
from skinsearch.models import hparams_class, known_hparams, model_hparams

PARAM_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")


class Param(BaseModel):
    """One hyperparameter's search domain."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["fixed", "grid", "choice", "uniform", "loguniform", "randint"]
    values: tuple[Any, ...] = ()  # fixed: the value; grid and choice: the options
    low: float = 0.0  # ranges: bounds, both inclusive
    high: float = 0.0

    @property
    def is_discrete(self) -> bool:
        """True when the domain is a finite list of values."""
        return self.kind in ("fixed", "grid", "choice")

    def describe(self) -> str:
        """A short human-readable form, as written in YAML."""
        if self.kind == "fixed":
            return repr(self.values[0])
        if self.is_discrete:
            return f"{self.kind} {list(self.values)}"
        return f"{self.kind} [{short_number(self.low)}, {short_number(self.high)}]"


def parse_params(raw: dict[str, Any], model: str, problems: list[str]) -> dict[str, Param]:
    allowed = COMMON_HPARAMS | model_hparams(model)
    fields, known = hparams_class(model), known_hparams()
    params: dict[str, Param] = {}
    for name, value in raw.items():
        where = f"params.{name}"
        if name not in known or name == "seed":
            problems.append(
                f"{where}: unknown hyperparameter (valid for {model}: {', '.join(sorted(allowed))})"
            )
        elif name not in allowed:
            problems.append(
                f"{where}: not a hyperparameter of model {model!r} (it takes: {', '.join(sorted(allowed))})"
            )
        else:
            param = _parse_param(fields, name, value, where, problems)
            if param is not None:
                params[name] = param
    return params


def _parse_param(
    fields: type[HParams], name: str, value: Any, where: str, problems: list[str]
) -> Param | None:
    before = len(problems)
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in PARAM_KINDS:
            keys = ", ".join(map(str, value)) or "none"
            problems.append(
                f"{where}: expected a value or one key of {', '.join(PARAM_KINDS)}, got keys: {keys}"
            )
            return None
        kind, body = next(iter(value.items()))  # one of PARAM_KINDS, checked above
    elif isinstance(value, list) and not _is_list_field(fields, name):
        problems.append(
            f"{where}: expected a single value, got a list (write `grid: [...]` or `choice: [...]` to search over values)"
        )
        return None
    else:
        kind, body = "fixed", [value]
    where_kind = where if kind == "fixed" else f"{where}.{kind}"
    if name in DISCRETE_ONLY and kind in ("uniform", "loguniform", "randint"):
        problems.append(
            f"{where}: must be a value, grid or choice, not a range ({DISCRETE_ONLY[name]})"
        )
        return None
    if kind in ("fixed", "grid", "choice"):
        if not isinstance(body, list) or not body:
            problems.append(
                f"{where_kind}: must be a non-empty list of values, got "
                + ("an empty list" if body == [] else kind_of(body))
            )
            return None
        for i, item in enumerate(body):
            item_where = where_kind if kind == "fixed" else f"{where_kind}[{i}]"
            _check_value(fields, name, item, item_where, problems)
        return (
            None
            if len(problems) > before
            else Param.model_validate({"kind": kind, "values": tuple(body)})
        )
    return _parse_range(fields, name, kind, body, where_kind, problems)


def _parse_range(
    fields: type[HParams], name: str, kind: str, body: Any, where: str, problems: list[str]
) -> Param | None:
    annotation = fields.model_fields[name].annotation
    if annotation not in (int, float):
        problems.append(f"{where}: {name} takes no range; use grid or choice")
        return None
    if kind == "randint" and annotation is not int:
        problems.append(
            f"{where}: randint is for integer hyperparameters; use uniform or loguniform for {name}"
        )
        return None
    if kind != "randint" and annotation is int:
        problems.append(f"{where}: {name} is an integer; use randint, grid or choice")
        return None
    if not (isinstance(body, list) and len(body) == 2 and all(_is_number(b) for b in body)):
        problems.append(f"{where}: must be [low, high], two numbers, got {shown(body)}")
        return None
    low, high = body
    if kind == "randint" and not all(isinstance(b, int) for b in body):
        problems.append(f"{where}: bounds must be integers, got {shown(body)}")
        return None
    if low >= high:
        problems.append(f"{where}: low must be < high, got [{low}, {high}]")
        return None
    if kind == "loguniform" and low <= 0:
        problems.append(f"{where}[0]: must be > 0 for a log scale, got {low}")
        return None
    before = len(problems)
    for i, bound in enumerate(body):
        _check_value(fields, name, bound, f"{where}[{i}]", problems)
    return (
        None
        if len(problems) > before
        else Param.model_validate({"kind": kind, "low": low, "high": high})
    )


def _check_value(
    fields: type[HParams], name: str, value: Any, where: str, problems: list[str]
) -> None:
    try:
        fields.model_validate({name: value}, strict=True)
    except ValidationError as exc:
        for err in exc.errors():
            sub = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"][1:])
            problems.append(f"{where}{sub}: {message(err)}")


def _is_list_field(fields: type[HParams], name: str) -> bool:
    return getattr(fields.model_fields[name].annotation, "__origin__", None) is list


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def param_to_yaml(param: Param) -> Any:
    if param.kind == "fixed":
        return param.values[0]
    if param.is_discrete:
        return {param.kind: list(param.values)}
    low, high = (
        (int(param.low), int(param.high)) if param.kind == "randint" else (param.low, param.high)
    )
    return {param.kind: [low, high]}
