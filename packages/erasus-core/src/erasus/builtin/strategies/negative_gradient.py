"""NegGrad+: fine-tune on the retain set while ascending the loss of paired forget batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.builtin._papers import KURMANJI_2023
from erasus.strategy import LoopParams, LossStrategy

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter

__all__ = ["NegativeGradient", "NegativeGradientParams"]


class NegativeGradientParams(LoopParams):
    """Parameters of NegGrad+ (defaults suit the digits benchmark)."""

    epochs: int = Field(1, ge=0, description="Passes over the retain set.")
    lr: float = Field(2e-4, gt=0, description="Learning rate.")
    alpha: float = Field(
        0.5, ge=0, le=1, description="Convex weight of the retain loss: each step minimises "
        "alpha * L_retain - (1 - alpha) * L_forget (alpha = 1 is plain fine-tuning).")


class NegativeGradient(LossStrategy):
    """NegGrad+: one convex objective, retain loss down and forget loss up, over the retain set.

    Each step of the shared loop takes a retain batch and a paired forget batch and
    minimises ``alpha * mean(loss(retain)) - (1 - alpha) * mean(loss(forget))``. An epoch
    is one pass over the RETAIN set; the (smaller) forget set is drawn alongside,
    wrapping around, so it is revisited several times per epoch. This is NegGrad+ of
    Kurmanji et al. (2023), the strong gradient baseline of the SCRUB paper.

    How it differs from its neighbours: ``gradient_ascent`` uses the forget set only (no
    retain term); ``gradient_difference`` runs its epochs over the FORGET set with two
    independent weights (``-forget_weight * L_forget + retain_weight * L_retain``), so
    the amount of retain data it sees is tied to the forget set's size. NegGrad+ ties the
    two weights through one ``alpha`` and sweeps the whole retain set each epoch, i.e.
    it is fine-tuning with a small negative-gradient term.
    """

    name = "negative_gradient"
    modalities = ("any",)
    needs = frozenset({"retain"})
    Params = NegativeGradientParams
    paper = KURMANJI_2023
    effect = "raise_forget_loss"
    epoch_over = "retain"
    pair_with = "forget"

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        p: NegativeGradientParams = self.params  # type: ignore[assignment]
        retain_loss = adapter.per_example_loss(retain).mean()
        forget_loss = adapter.per_example_loss(forget).mean()
        total = p.alpha * retain_loss - (1.0 - p.alpha) * forget_loss
        return {"loss": total, "forget_loss": forget_loss, "retain_loss": retain_loss}
