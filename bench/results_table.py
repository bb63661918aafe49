"""Mean ± std over a search's trials of the validation metrics at each trial's best epoch.

For searches whose trials are one configuration under different seeds (the baselines in
search_spaces/baselines/, or a ``-confirm`` search restricted to one configuration), this is the
"mean ± std over seeds" row of docs/RESULTS.md.

    python bench/results_table.py skinsearch-results/seed_cnn [more search folders ...]
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import yaml

from skinsearch.store.trials import result_rows

METRICS = ["val_acc", "val_balanced_acc", "val_macro_f1", "val_auc"]


def summarise(folder: Path) -> dict[str, tuple[float, float, int]]:
    """Metric -> (mean, std, n) over the trials of the search in ``folder``."""
    saved = yaml.safe_load((folder / "search.yaml").read_text())
    metric = saved["spec"].get("train", {}).get("metric", "val_acc")
    sign = -1.0 if metric.endswith("_loss") else 1.0
    bests = []
    for trial in sorted(folder.glob("trial_*/")):
        rows = [r for r in result_rows(trial) if isinstance(r.get(metric), int | float)]
        if rows:
            bests.append(max(rows, key=lambda r: sign * r[metric]))
    out = {}
    for m in METRICS:
        values = [r[m] for r in bests if isinstance(r.get(m), int | float) and math.isfinite(r[m])]
        if values:
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            out[m] = (statistics.mean(values), std, len(values))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    print("| search | runs | " + " | ".join(METRICS) + " |")
    print("|---" * (len(METRICS) + 2) + "|")
    for folder in args.folders:
        stats = summarise(folder)
        n = max((s[2] for s in stats.values()), default=0)
        cells = [f"{stats[m][0]:.3f} ± {stats[m][1]:.3f}" if m in stats else "-" for m in METRICS]
        print(f"| {folder.name} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
