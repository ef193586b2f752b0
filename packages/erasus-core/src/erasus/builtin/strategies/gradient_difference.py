"""Gradient difference: ascend the forget loss while descending the retain loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.components import Paper
from erasus.strategy import LoopParams, LossStrategy

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter

__all__ = ["GradientDifference", "GradientDifferenceParams"]


class GradientDifferenceParams(LoopParams):
    """Parameters of gradient difference (defaults suit the digits benchmark)."""

    epochs: int = Field(8, ge=0, description="Passes over the forget set.")
    lr: float = Field(2e-4, gt=0, description="Learning rate.")
    forget_weight: float = Field(1.0, ge=0, description="Weight of the (ascended) forget loss.")
    retain_weight: float = Field(1.0, ge=0, description="Weight of the (descended) retain loss.")


class GradientDifference(LossStrategy):
    """Ascend the forget-set loss and descend the retain-set loss in the same step.

    For each forget batch, paired with a retain batch, the shared loop minimises
    ``-forget_weight * mean(loss(forget)) + retain_weight * mean(loss(retain))`` and logs
    the two positive means as ``forget_loss`` and ``retain_loss``. The retain term keeps
    utility while the forget term removes the forget set's influence.
    """

    name = "gradient_difference"
    modalities = ("any",)
    needs = frozenset({"retain"})
    Params = GradientDifferenceParams
    paper = Paper(
        title="Continual Learning and Private Unlearning",
        authors="Bo Liu, Qiang Liu, Peter Stone",
        year=2022,
        url="https://arxiv.org/abs/2203.12817",
        venue="CoLLAs",
    )
    effect = "raise_forget_loss"
    epoch_over = "forget"
    pair_with = "retain"

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        p: GradientDifferenceParams = self.params  # type: ignore[assignment]
        forget_loss = adapter.per_example_loss(forget).mean()
        retain_loss = adapter.per_example_loss(retain).mean()
        total = -p.forget_weight * forget_loss + p.retain_weight * retain_loss
        return {"loss": total, "forget_loss": forget_loss, "retain_loss": retain_loss}
