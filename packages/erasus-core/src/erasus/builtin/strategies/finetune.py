"""Fine-tuning on the retain set only, starting from the original weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.components import Paper
from erasus.strategy import LoopParams, LossStrategy

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter

__all__ = ["Finetune", "FinetuneParams"]


class FinetuneParams(LoopParams):
    """Parameters of fine-tuning."""

    epochs: int = Field(5, ge=0, description="Passes over the retain set.")
    lr: float = Field(3e-2, gt=0, description="Learning rate.")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("sgd", description="Optimizer.")


class Finetune(LossStrategy):
    """Keep training the original model on the retain set only (catastrophic forgetting).

    The shared loop minimises the mean per-example loss (cross-entropy for classifiers)
    over the retain set, starting from the original weights; the forget set is never
    seen, so its influence fades as the model keeps learning without it.
    """

    name = "finetune"
    modalities = ("any",)
    needs = frozenset({"retain"})
    Params = FinetuneParams
    paper = Paper(
        title="Machine Unlearning of Features and Labels",
        authors="Alexander Warnecke, Lukas Pirch, Christian Wressnegger, Konrad Rieck",
        year=2023,
        url="https://arxiv.org/abs/2108.11577",
        venue="NDSS",
    )
    effect = "fit_retain"
    epoch_over = "retain"
    pair_with = None

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        retain_loss = adapter.per_example_loss(retain).mean()
        return {"loss": retain_loss, "retain_loss": retain_loss}
