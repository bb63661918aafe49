"""What "better" means for a search: one metric, one direction, one way to break ties.

Every ranking of trials (the progress table, the end table, ``best``, ``report``, confirmation,
the MLflow parent's ``best_trial`` tag) goes through ``Objective.rank``, so that they agree:

- higher is better for ``mode: max``, lower for ``mode: min``;
- a missing or non-finite value (a trial that diverged, or never reported) ranks last;
- equal values rank by name, ascending: the earlier trial (``..._00000`` before ``..._00001``)
  wins a tie; within one trial, the earlier epoch wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

T = TypeVar("T")


def default_mode(metric: str) -> Literal["max", "min"]:
    """Losses are minimised, everything else (accuracy, F1, AUC, recall) maximised."""
    return "min" if metric.endswith("_loss") else "max"


@dataclass(frozen=True)
class Objective:
    """A metric and its direction."""

    metric: str
    mode: Literal["max", "min"]

    @classmethod
    def of(cls, metric: str, mode: str | None = None) -> Objective:
        """The objective for ``metric``; ``mode`` None takes the metric's default."""
        chosen = mode or default_mode(metric)
        if chosen not in ("max", "min"):
            raise ValueError(f"mode must be max or min, not {chosen!r}")
        return cls(metric, chosen)  # type: ignore[arg-type]

    @property
    def sign(self) -> float:
        """+1 when higher is better, -1 when lower is."""
        return 1.0 if self.mode == "max" else -1.0

    def score(self, value: Any) -> float:
        """``value`` oriented so that larger is better; -inf for a missing or non-finite one."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            return -math.inf
        return self.sign * number if math.isfinite(number) else -math.inf

    def has_value(self, metrics: dict[str, Any]) -> bool:
        """Whether ``metrics`` holds a finite value of the metric."""
        return self.value_of(metrics) > -math.inf

    def value_of(self, metrics: dict[str, Any]) -> float:
        """The objective's score in one row of metrics (see ``score``)."""
        return self.score(metrics.get(self.metric))

    def rank(
        self, items: Iterable[T], value: Callable[[T], Any], name: Callable[[T], Any]
    ) -> list[T]:
        """``items`` best first: by ``value(item)``, ties by ``name(item)`` ascending."""
        return sorted(items, key=lambda item: (-self.score(value(item)), name(item)))

    def best(
        self, items: Iterable[T], value: Callable[[T], Any], name: Callable[[T], Any]
    ) -> T | None:
        """The first of ``rank``, or None for no items."""
        ranked = self.rank(items, value, name)
        return ranked[0] if ranked else None

    def best_epoch(self, rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """The row of a trial's best epoch (the earliest of equals); {} for no rows."""
        found = self.best(rows, lambda row: row.get(self.metric), lambda row: row.get("epoch", 0))
        return found if found is not None else {}
