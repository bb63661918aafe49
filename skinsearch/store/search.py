"""One search as its folder holds it, read once: ``Search.load(folder)``.

``best``, confirmation, ``report`` and ``sync-mlflow`` read a search through this object: its
record (``search.yaml``), the plan compiled from its spec, its trials as Tune's files record
them, and its saved confirmation. Every ranking of its trials goes through the plan's
``Objective`` (``Search.ranked``), so that they all agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pydantic import ValidationError

from skinsearch.config.objective import Objective
from skinsearch.config.plan import SearchPlan
from skinsearch.config.spec import SearchSpec
from skinsearch.errors import ResultsError
from skinsearch.store.layout import CONFIRMATION_FILE, HELD_OUT_FILE
from skinsearch.store.records import (
    ConfirmationRecord,
    HeldOutRecord,
    SearchRecord,
    TrialRecord,
)
from skinsearch.store.searches import load_search
from skinsearch.store.trials import read_trial, result_rows, trial_end


@dataclass(frozen=True)
class Search:
    """A search's folder and its ``search.yaml``; the rest is read from the folder on demand."""

    folder: Path
    record: SearchRecord

    @classmethod
    def load(cls, folder: Path) -> Search:
        """The search in ``folder``.

        Raises:
            ResultsError: one line naming ``search.yaml`` when it cannot be read.
        """
        return cls(folder, load_search(folder))

    @property
    def name(self) -> str:
        """The search's name: its folder under the storage, its MLflow parent run."""
        return self.record.search

    @property
    def spec(self) -> SearchSpec:
        """The resolved spec it ran."""
        return self.record.spec

    @cached_property
    def plan(self) -> SearchPlan:
        """The plan compiled from its spec (fixed and searched hyperparameters, objective)."""
        return SearchPlan.compile(self.spec)

    def trials(self, objective: Objective | None = None) -> list[TrialRecord]:
        """Every trial Tune started in the folder, by folder name, with how it ended and its
        best epoch by ``objective`` (default: the search's own)."""
        out = []
        for folder in sorted(self.folder.glob("trial_*/")):
            rows = result_rows(folder)  # read once for both
            record = read_trial(folder, self.plan, objective, rows)
            if record is not None:
                record.end, record.error = trial_end(folder, rows)
                out.append(record)
        return out

    def ranked(self, objective: Objective | None = None) -> list[TrialRecord]:
        """The trials whose best epoch has a finite value of the objective, best first (ties
        by name, see ``Objective``)."""
        objective = objective or self.plan.objective
        scored = [t for t in self.trials(objective) if objective.has_value(t.best)]
        return objective.rank(scored, lambda t: t.best[objective.metric], lambda t: t.name)

    def confirmation(self) -> ConfirmationRecord | None:
        """Its saved confirmation (``confirmation.json``), or None when it was never confirmed.

        Raises:
            ResultsError: naming the file when it is there but damaged.
        """
        path = self.folder / CONFIRMATION_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ResultsError(f"{path}: not readable ({exc.__class__.__name__})") from None
        try:
            return ConfirmationRecord.model_validate(json.loads(text))
        except (ValueError, ValidationError) as exc:
            problem = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else "not JSON"
            raise ResultsError(
                f"{path}: {problem}; run `skinsearch best --name {self.name} --confirm K` "
                "again to redo the confirmation, or pass --single"
            ) from None

    def held_out(self) -> HeldOutRecord | None:
        """The held-out test figures of the model last exported from this search, or from the
        search that confirmed it; None when none was scored (no test split, or no export).

        Raises:
            ResultsError: naming the file when it is there but damaged.
        """
        saved = self.confirmation()
        folders = [self.folder] + ([self.folder.parent / saved.confirmed_in] if saved else [])
        for path in [f / HELD_OUT_FILE for f in reversed(folders)]:
            try:
                return HeldOutRecord.model_validate_json(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError, ValidationError) as exc:
                raise ResultsError(
                    f"{path}: not readable ({exc.__class__.__name__}); export the model again "
                    "with `skinsearch best --export` to rewrite it"
                ) from None
        return None
