"""The memory a trial needs, estimated before any trial starts, and a search refused when its
largest trial cannot fit in what Ray gives a trial."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from skinsearch.cli import main
from skinsearch.config.hparams import HParams
from skinsearch.config.plan import SearchPlan
from skinsearch.config.spec import loads_spec
from skinsearch.models import build_model
from skinsearch.training.footprint import FLOAT_BYTES, largest_trial
from skinsearch.tune.cluster import trial_memory_problem


def plan_of(text: str) -> SearchPlan:
    return SearchPlan.compile(loads_spec("name: f\n" + text))


def test_an_mlp_is_counted_exactly_from_its_layers() -> None:
    plan = plan_of(
        "model: mlp\nparams:\n  input_size: 16\n  hidden_sizes: [64, 32]\n  batch_size: 8\n"
    )
    need = largest_trial(plan, num_classes=5)
    built = build_model("mlp", HParams(input_size=16, hidden_sizes=[64, 32]), 16, 5)
    params = sum(p.numel() for p in built.parameters())
    assert need.parameters == params == (768 * 64 + 64) + (64 * 32 + 32) + (32 * 5 + 5)
    # leaf outputs per image: flatten 768; linear, relu, dropout 64 each; 32 each; logits 5
    activations = 768 + 3 * 64 + 3 * 32 + 5
    assert need.bytes == FLOAT_BYTES * ((2 + 2) * params + 2 * 8 * activations)  # Adam: 2 states
    assert need.describe("mlp") == "mlp with hidden_sizes [64, 32] at input_size 16, batch_size 8"


def test_the_largest_configuration_is_found_in_grids_and_tpe_corners() -> None:
    grid = plan_of(
        "model: cnn\nparams:\n  input_size: {grid: [32, 64]}\n  batch_size: {grid: [16, 64]}\n"
        "  channels: {choice: [[16], [32, 64]]}\n  optimizer: {grid: [sgd, adam]}\n"
    )
    need = largest_trial(grid, num_classes=3)
    assert need.config["input_size"] == 64 and need.config["batch_size"] == 64
    sizes = [largest_trial(SearchPlan.compile(grid.spec, [c]), 3).bytes for c in grid.configs or []]
    assert need.bytes == max(sizes)
    tpe = plan_of(
        "model: cnn\nsearch: {sampler: tpe, num_samples: 5}\n"
        "params:\n  batch_size: {randint: [16, 200]}\n  fc_size: {randint: [32, 512]}\n"
    )
    assert largest_trial(tpe, 3).config == {"fc_size": 512, "input_size": 64, "batch_size": 200}


def test_the_estimate_is_a_floor_of_what_a_training_step_really_uses() -> None:
    # the weights, gradients and Adam's two moments of a real step, counted by torch itself
    plan = plan_of("model: cnn\nparams:\n  input_size: 32\n  channels: [8, 16]\n  batch_size: 4\n")
    need = largest_trial(plan, num_classes=3)
    model = build_model("cnn", HParams(input_size=32, channels=[8, 16]), 32, 3)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.rand(4, 3, 32, 32)).sum().backward()
    optimizer.step()
    tensors = [*model.parameters(), *(p.grad for p in model.parameters())]
    tensors += [t for state in optimizer.state.values() for t in state.values() if t.dim()]
    held = sum(t.numel() * t.element_size() for t in tensors if t is not None)
    assert held <= need.bytes < held + FLOAT_BYTES * 2 * 4 * 40_000  # plus the activations


def test_a_trial_larger_than_rays_memory_per_trial_is_one_line_naming_the_way_out() -> None:
    spec = loads_spec("name: f\nmodel: mlp\nparams:\n  input_size: 256\n  hidden_sizes: [100000]\n")
    need = largest_trial(SearchPlan.compile(spec), num_classes=9)
    gib = 2.0**30
    shared = trial_memory_problem(spec, need, 4, 16 * gib, 2.0, "Ray")
    assert shared.startswith("params: a trial of mlp with hidden_sizes [100000] at input_size 256")
    assert "more than the 8.0 GiB Ray has for each of the 2 trials run at once" in shared
    assert "raise resources.cpus_per_trial" in shared and "\n" not in shared
    alone = trial_memory_problem(spec, need, 1, 16 * gib, 2.0, "this machine")
    assert "the 16.0 GiB this machine has for a trial" in alone and "cpus_per_trial" not in alone
    assert trial_memory_problem(spec, need, 4, 4000 * gib, 2.0, "Ray") == ""


@pytest.mark.slow
def test_run_refuses_a_model_that_cannot_fit_before_any_trial(tmp_path: Path) -> None:
    file = tmp_path / "huge.yaml"
    file.write_text(
        "name: huge\nmodel: mlp\ndata: {path: 'builtin:synthetic'}\ntrain: {max_epochs: 2}\n"
        "params:\n  input_size: 1024\n  hidden_sizes: [100000, 100000]\n"
    )
    storage = tmp_path / "results"
    result = CliRunner().invoke(main, ["run", str(file), "--storage", str(storage), "--cpus", "2"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "needs at least" in errors[0], result.output
    assert "GiB this machine has for a trial" in errors[0]  # before Ray started: no "Ray:" line
    assert "Ray:" not in result.output and "Traceback" not in result.output
    assert not (storage / "huge").exists()  # no trial, and the claimed name given back
