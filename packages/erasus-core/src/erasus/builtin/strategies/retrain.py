"""Retraining from scratch on the retain set: the exact-unlearning oracle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.components import Paper
from erasus.strategy import LoopParams, LossStrategy

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import RunContext, UnlearnData

__all__ = ["Retrain", "RetrainParams"]


class RetrainParams(LoopParams):
    """Parameters of retraining: a supervised recipe (defaults suit the digits CNN)."""

    epochs: int = Field(20, ge=0, description="Passes over the retain set.")
    lr: float = Field(5e-3, gt=0, description="Learning rate.")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("adam", description="Optimizer.")
    batch_size: int = Field(32, ge=1, description="Examples per batch.")
    scheduler: Literal["constant", "linear", "cosine"] = Field(
        "cosine", description="Learning-rate schedule over all optimizer steps.")


class Retrain(LossStrategy):
    """Re-initialise every weight and train on the retain set only (exact unlearning).

    ``prepare`` re-initialises the model with ``adapter.reset_parameters()`` under a torch
    RNG seeded by the run seed (the global RNG is left untouched), then the shared loop
    minimises the mean per-example loss (cross-entropy for classifiers) over the retain
    set. The result is the oracle other methods are compared with. The pipeline also uses
    this strategy, with the config's ``train:`` section, to train the original model on
    the full training set (retain = train).
    """

    name = "retrain"
    modalities = ("any",)
    needs = frozenset({"retain"})
    Params = RetrainParams
    paper = Paper(
        title="Towards Making Systems Forget with Machine Unlearning",
        authors="Yinzhi Cao, Junfeng Yang",
        year=2015,
        url="https://doi.org/10.1109/SP.2015.35",
        venue="IEEE Symposium on Security and Privacy",
    )
    effect = "retrain_from_scratch"
    epoch_over = "retain"
    pair_with = None

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(run.seed))
            adapter.reset_parameters()

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        retain_loss = adapter.per_example_loss(retain).mean()
        return {"loss": retain_loss, "retain_loss": retain_loss}
