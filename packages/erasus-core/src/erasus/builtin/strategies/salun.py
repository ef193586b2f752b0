"""SalUn: random-label unlearning restricted to the weights salient for the forget set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.builtin._papers import FAN_2024
from erasus.builtin.strategies.random_label import draw_random_labels, relabelled_loss
from erasus.strategy import LoopParams, LossStrategy

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import History, RunContext, UnlearnData

__all__ = ["SalUn", "SalUnParams"]


class SalUnParams(LoopParams):
    """Parameters of SalUn (defaults suit the digits benchmark)."""

    epochs: int = Field(4, ge=0, description="Passes over the forget set.")
    lr: float = Field(2e-4, gt=0, description="Learning rate.")
    saliency_fraction: float = Field(
        0.5, gt=0, le=1, description="Share of all weights that are salient (trainable): "
        "those with the largest forget-loss gradient magnitude; 0.5 as in the paper.")
    retain_weight: float = Field(
        1.0, ge=0, description="Weight of the cross-entropy on the paired retain batch.")


class SalUn(LossStrategy):
    """Saliency unlearning: random-label training that updates only the salient weights.

    Before training, at the original weights, the saliency of every weight is
    ``|g|`` with ``g`` the gradient of the mean forget-set loss
    (``erasus.gradients.mean_grad``); the mask ``m = 1[|g| >= gamma]`` keeps exactly the
    top ``saliency_fraction`` of all weights (one global threshold ``gamma``, ties broken
    by position). Every forget example then gets one random label drawn uniformly over all
    classes (a generator seeded by the run seed, keyed by the example's position in the
    forget set, as in the authors' code), and the shared loop minimises
    ``CE(forget, random labels) + retain_weight * CE(paired retain batch)`` while gradient
    hooks multiply every gradient by ``m``: non-salient weights keep their exact values
    (with the default ``weight_decay = 0``; weight decay would still shrink them, as in
    the paper's SGD recipe). The hooks are removed when unlearning ends.

    Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency
    in Both Image Classification and Generation", ICLR 2024. Needs a classifier adapter
    (``labels``, ``with_labels``, ``num_classes``).
    """

    name = "salun"
    shardable = False  # its saliency masks hook whole parameters' gradients
    modalities = ("classification",)
    needs = frozenset({"retain"})
    Params = SalUnParams
    paper = FAN_2024
    effect = "raise_forget_loss"
    epoch_over = "forget"
    pair_with = "retain"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        #: The saliency mask by parameter name (bool tensors), set by prepare().
        self.masks: dict[str, torch.Tensor] | None = None
        #: The random label of each forget example (by position), set by prepare().
        self.random_labels: torch.Tensor | None = None

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        from erasus.builtin.strategies._importance import (
            classifier_classes,
            scatter,
            top_fraction,
        )
        from erasus.gradients import mean_grad, param_names

        p: SalUnParams = self.params  # type: ignore[assignment]
        num_classes = classifier_classes(adapter, self.name, "trains on random labels")
        names = param_names(adapter)
        saliency = mean_grad(adapter, data.forget, names=names,
                             collate_fn=data.collate_fn).abs()
        self.masks = scatter(adapter, names, top_fraction(saliency, p.saliency_fraction))
        self.random_labels = draw_random_labels(len(data.forget), num_classes, run.seed)

    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        from erasus.builtin.strategies._importance import masked_unlearn

        return masked_unlearn(self, adapter, data, run)

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        if self.random_labels is None:
            raise RuntimeError("salun: prepare() must run before loss()")
        p: SalUnParams = self.params  # type: ignore[assignment]
        return relabelled_loss(adapter, forget, retain,  # type: ignore[arg-type]
                               self.random_labels, p.retain_weight)
