"""A pretrained feature extractor with a new classification head, and how it is fine-tuned:
the head alone for the first ``freeze_epochs``, then everything, the backbone at
``backbone_lr_mult`` times the learning rate and, with ``l2sp``, held near the weights it
started from."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class BackboneClassifier(nn.Module):
    """``head(backbone(x))``: the backbone maps an image batch to ``(N, features)``.

    Args:
        backbone: The feature extractor (its own classifier removed).
        features: The width of its output.
        num_classes: Classes of the new head.
        dropout: Dropout before the head's linear layer.
        freeze_epochs: Epochs (from the first) in which the backbone is frozen: no gradients,
            and its batch-norm statistics kept as trained.
        backbone_lr_mult: The backbone's learning rate as a fraction of the head's.
        l2sp: How strongly the backbone's weights decay toward the weights it started from
            (L2-SP, Li et al. 2018) instead of toward zero: after each optimizer step every
            backbone weight moves ``lr x l2sp`` of the way back to its starting value (the
            decoupled form, as AdamW's weight decay; ``optim.py``), and ``weight_decay`` then
            spares the backbone. 0: off.
    """

    def __init__(
        self,
        backbone: nn.Module,
        features: int,
        num_classes: int,
        dropout: float,
        freeze_epochs: int,
        backbone_lr_mult: float,
        l2sp: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, num_classes))
        self.freeze_epochs = freeze_epochs
        self.backbone_lr_mult = backbone_lr_mult
        self.l2sp = l2sp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups, each with its ``lr_mult`` (of the trial's lr), the
        backbone's with its ``l2sp`` (and no weight decay toward zero) when that is on."""
        backbone: dict[str, Any] = {
            "params": list(self.backbone.parameters()),
            "lr_mult": self.backbone_lr_mult,
        }
        if self.l2sp > 0.0:
            backbone.update(l2sp=self.l2sp, weight_decay=0.0)
        return [backbone, {"params": list(self.head.parameters()), "lr_mult": 1.0}]

    def start_epoch(self, epoch: int) -> None:
        """Before training 1-based ``epoch`` (after ``train()``): freeze or thaw the backbone."""
        frozen = epoch <= self.freeze_epochs
        self.backbone.requires_grad_(not frozen)
        if frozen:
            self.backbone.eval()  # batch norm keeps the statistics it was trained with
