"""The package's layout, as docs/ARCHITECTURE.md draws it: imports point down the layers, Ray
lives in ``tune/`` only, MLflow in ``tracking/`` only, and modules and functions stay short."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "skinsearch"
BASE = {"errors", "_files", "_messages", "_yaml", "_registry"}
# unit -> the units it may import (besides itself and the base helpers). ``config.hparams`` and
# ``config.objective`` are the vocabulary every layer shares; the rest of config reads the model
# registry (which hyperparameters a model takes) to validate a file.
VOCABULARY = {"config.hparams", "config.objective"}
LAYERS: dict[str, set[str]] = {"config.hparams": set(), "config.objective": set()}
LAYERS["models"] = LAYERS["data"] = {"config.hparams"}
LAYERS["config"] = VOCABULARY | {"models"}
LAYERS["store"] = LAYERS["config"] | {"config"}
LAYERS["training"] = LAYERS["store"] | {"data", "store"}
LAYERS["tracking"] = LAYERS["store"] | {"store", "training"}
LAYERS["tune"] = LAYERS["training"] | {"training", "tracking"}
LAYERS["results"] = LAYERS["tune"] | {"tune"}
TOP = {"cli", "_cli_support", "_cli_bundle", "__main__", "__init__"}  # may import anything
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def unit_of(dotted: str) -> str:
    """``skinsearch.config.spec`` -> ``config``; ``skinsearch.config.hparams`` -> itself."""
    parts = dotted.split(".")[1:]
    if parts[:2] in (["config", "hparams"], ["config", "objective"]):
        return ".".join(parts[:2])
    return parts[0] if parts else "__init__"


def dotted_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            if node.module == "skinsearch":  # from skinsearch import x
                names += [f"skinsearch.{alias.name}" for alias in node.names]
    return names


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_layers(path: Path) -> None:
    own = unit_of(dotted_name(path))
    if own in TOP:
        return
    allowed = LAYERS.get(own, set()) | BASE | {own}
    wrong = [
        name
        for name in imports(path)
        if name.startswith("skinsearch.") and unit_of(name) not in allowed
    ]
    assert not wrong, f"{path.name} ({own}) may not import {wrong}"


def test_ray_is_used_in_tune_only_and_mlflow_in_tracking_only() -> None:
    for path in modules():
        unit = unit_of(dotted_name(path))
        used = {name.split(".")[0] for name in imports(path)}
        if "ray" in used:
            assert unit == "tune", f"{path} imports ray"
        if "mlflow" in used:
            assert unit == "tracking", f"{path} imports mlflow"


def test_modules_and_functions_are_short() -> None:
    long = []
    for path in modules():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{path.relative_to(PACKAGE)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {lines}")
    assert not long, long


def test_reading_a_search_loads_neither_torch_nor_ray() -> None:
    # validate, report and sync-mlflow read specs and results: they should start fast and run
    # where torch is not installed the same way (a laptop reading a cluster's results)
    import subprocess
    import sys

    readers = [
        "skinsearch.cli",
        "skinsearch.config.plan",
        "skinsearch.store.search",
        "skinsearch.results.report",
        "skinsearch.tracking.sync",
    ]
    code = (
        f"import sys\nfor m in {readers!r}: __import__(m)\n"
        "print(sorted(m for m in ('torch', 'ray', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
