"""Optimizers and learning-rate schedules by name: what ``optimizer:`` and ``schedule:`` in a
search space choose. Adding one is one registered function here and its name in ``HParams``.
Also the moving average of the weights that ``ema:`` asks for."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel

from skinsearch._registry import Registry
from skinsearch.config.hparams import HParams

#: the parameters, or parameter groups (dicts with "params" and the group's own settings)
Params = Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]]
Tensors = tuple[torch.Tensor, ...] | list[torch.Tensor]
OptimizerBuilder = Callable[[Params, HParams], torch.optim.Optimizer]
#: ``schedule(done, span)``: the learning rate after warm-up as a fraction of ``lr``, ``done``
#: epochs into the ``span`` that follow the warm-up
Schedule = Callable[[int, int], float]

OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer")
SCHEDULES: Registry[Schedule] = Registry("learning-rate schedule")


@OPTIMIZERS.register("adam")
def _adam(params: Params, hp: HParams) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(params: Params, hp: HParams) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)


@OPTIMIZERS.register("sgd")
def _sgd(params: Params, hp: HParams) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)


@SCHEDULES.register("constant")
def _constant(done: int, span: int) -> float:
    return 1.0


@SCHEDULES.register("cosine")
def _cosine(done: int, span: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * done / span))  # to 0 at the last epoch


@SCHEDULES.register("step")
def _step(done: int, span: int) -> float:
    return 0.1 ** (done // max(1, math.ceil(span / 3)))  # x0.1 at each third


def build_optimizer(model: torch.nn.Module, hp: HParams) -> torch.optim.Optimizer:
    """The trial's optimizer over ``model``'s parameters, in the model's own parameter groups
    when it has them (a fine-tuned backbone learns at a fraction of the head's rate: each
    group's ``lr_mult``, which the trainer applies every epoch)."""
    from skinsearch.models.backbone import BackboneClassifier

    groups = model.param_groups() if isinstance(model, BackboneClassifier) else model.parameters()
    optimizer = OPTIMIZERS[hp.optimizer](groups, hp)
    pull = _pull_to_start(optimizer)
    if pull is not None:
        optimizer.register_step_post_hook(pull)
    return optimizer


def _pull_to_start(optimizer: torch.optim.Optimizer) -> Callable[..., None] | None:
    """L2-SP's decay toward the starting weights, for the groups that carry an ``l2sp``: a step
    post-hook that moves each of their weights ``lr x l2sp`` (at most all) of the way back to
    its value now (built, trained weights loaded, not yet trained; a resumed trial rebuilds the
    same start before its checkpoint is loaded). None when no group asks for it.

    The starting values live in the hook, not in the group, so that checkpoints of the
    optimizer do not carry a second copy of the backbone."""
    starts = {
        i: [p.detach().clone() for p in group["params"]]
        for i, group in enumerate(optimizer.param_groups)
        if group.get("l2sp", 0.0) > 0.0
    }
    if not starts:
        return None

    @torch.no_grad()
    def pull(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        for i, start in starts.items():
            group = optimizer.param_groups[i]
            torch._foreach_lerp_(group["params"], start, min(1.0, group["lr"] * group["l2sp"]))

    return pull


def lr_factor(hp: HParams, epoch: int, max_epochs: int) -> float:
    """The learning rate of 1-based ``epoch`` as a fraction of ``hp.lr``: a linear warm-up over
    ``warmup_epochs``, then the trial's schedule (constant, cosine to 0 at ``max_epochs``, or
    step: x0.1 at each third of the remaining epochs)."""
    if epoch <= hp.warmup_epochs:
        return epoch / (hp.warmup_epochs + 1)
    done, span = epoch - hp.warmup_epochs - 1, max(1, max_epochs - hp.warmup_epochs)
    return SCHEDULES[hp.schedule](done, span)


def build_ema(model: torch.nn.Module, hp: HParams) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights and BatchNorm statistics, updated
    by ``update_parameters(model)`` after each optimizer step; None when ``hp.ema`` is 0.

    The decay after ``n`` updates is ``min(hp.ema, (1 + n) / (10 + n))``, as TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates``: the average spans about the last ninth
    of the steps so far until the ramp reaches ``hp.ema`` (0.99 after about 900 steps), so the
    early average is not held back by the untrained head it started from.
    """
    if hp.ema == 0.0:
        return None
    decay = hp.ema

    @torch.no_grad()
    def update(averaged: Tensors, current: Tensors, n: torch.Tensor | int) -> None:
        # a tensor on the count's device, so that a GPU is not made to wait for it every step
        count = torch.as_tensor(n)
        weight = 1.0 - ((1.0 + count) / (10.0 + count)).clamp(max=decay)
        if torch.is_floating_point(averaged[0]):
            # torch's stubs lack the 0-dim tensor weight that lerp takes
            torch._foreach_lerp_(averaged, current, weight)  # type: ignore[call-overload]
        else:  # BatchNorm's batch counters: the latest
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    ema = AveragedModel(model, multi_avg_fn=update, use_buffers=True)
    return ema.eval()
