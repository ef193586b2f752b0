"""Gradient ascent on the forget set: maximise its loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.components import Paper
from erasus.strategy import LoopParams, LossStrategy

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter

__all__ = ["GradientAscent", "GradientAscentParams"]


class GradientAscentParams(LoopParams):
    """Parameters of gradient ascent (unbounded: keep it short)."""

    epochs: int = Field(5, ge=0, description="Passes over the forget set.")
    lr: float = Field(1e-4, gt=0, description="Learning rate.")


class GradientAscent(LossStrategy):
    """Maximise the loss on the forget set (gradient ascent), on any model with a loss.

    Each step minimises ``-mean(per_example_loss(forget batch))``; ``forget_loss`` logs the
    positive mean. The objective is unbounded, so the number of steps and the learning
    rate decide how much is forgotten and how much utility is lost; the loop's divergence
    guard (``max_abs_loss``) stops a run whose loss explodes.
    """

    name = "gradient_ascent"
    modalities = ("any",)
    needs = frozenset()
    Params = GradientAscentParams
    paper = Paper(
        title="Unrolling SGD: Understanding Factors Influencing Machine Unlearning",
        authors="Anvith Thudi, Gabriel Deza, Varun Chandrasekaran, Nicolas Papernot",
        year=2022,
        url="https://arxiv.org/abs/2109.13398",
        venue="IEEE EuroS&P",
    )
    effect = "raise_forget_loss"
    epoch_over = "forget"
    pair_with = None

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        forget_loss = adapter.per_example_loss(forget).mean()
        return {"loss": -forget_loss, "forget_loss": forget_loss}
