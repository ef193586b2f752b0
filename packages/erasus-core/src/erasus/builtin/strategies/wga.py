"""Weighted gradient ascent (WGA): ascent weighted by the model's own confidence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.strategy import LoopParams, LossStrategy

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import RunContext, UnlearnData

__all__ = ["WGA", "WGAParams", "wga_loss"]


class WGAParams(LoopParams):
    """Parameters of weighted gradient ascent (defaults suit the digits benchmark)."""

    epochs: int = Field(5, ge=0, description="Passes over the forget set.")
    lr: float = Field(5e-4, gt=0, description="Learning rate.")
    alpha: float = Field(
        1.0, ge=0, description="Power of the confidence weight p(y_t|x)^alpha (0: plain "
        "gradient ascent; the paper's code uses 1).")
    retain_weight: float = Field(
        2.0, ge=0, description="Weight of the mean retain loss added to each step; 0 gives "
        "the paper's forget-only objective, which then needs no retain set.")


def wga_loss(losses: torch.Tensor, mask: torch.Tensor, alpha: float) -> torch.Tensor:
    """``-sum(w * loss * mask) / sum(mask)`` with ``w = exp(-loss) ** alpha``, no gradient
    through ``w``: the mean over the batch's target tokens of weighted negative NLL."""
    mask = mask.to(losses.dtype)
    weights = (-losses.detach() * alpha).exp()
    return -(weights * losses * mask).sum() / mask.sum()


class WGA(LossStrategy):
    """WGA (Wang et al., ICLR 2025): gradient ascent with each target token weighted by p^alpha.

    Each step minimises, over a forget batch,
    ``-sum_t w_t * nll_t / (number of target tokens)`` with ``w_t = p(y_t|x)^alpha =
    exp(-alpha * nll_t)`` computed without gradient (stop-gradient weights), plus
    ``retain_weight * mean(loss(retain batch))`` (paired retain batches only when
    ``retain_weight > 0``; the paper's objective is the forget term alone). Tokens the
    model has already forgotten (low ``p``) get small weights, so the ascent does not
    keep driving their likelihood to zero, which is what makes plain gradient ascent
    diverge.

    Per-token losses come from :meth:`ModelAdapter.token_losses`: for a causal LM every
    answer token is weighted by its own probability (the authors' code); a classifier
    has one target per example, so the weight is ``p(y|x)^alpha`` of its label.
    ``forget_loss`` logs the mean per-example loss of the forget batch.
    """

    name = "wga"
    modalities = ("any",)
    needs = frozenset()
    Params = WGAParams
    paper = Paper(
        title="Rethinking LLM Unlearning Objectives: A Gradient Perspective and Go Beyond",
        authors="Qizhou Wang, Jin Peng Zhou, Zhanke Zhou, Saebyeol Shin, Bo Han, "
        "Kilian Q. Weinberger",
        year=2025,
        url="https://arxiv.org/abs/2502.19301",
        venue="ICLR",
    )
    effect = "raise_forget_loss"
    epoch_over = "forget"
    pair_with = "retain"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: WGAParams = self.params  # type: ignore[assignment]
        self.pair_with = "retain" if p.retain_weight > 0 else None

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        p: WGAParams = self.params  # type: ignore[assignment]
        if p.retain_weight > 0 and (data.retain is None or len(data.retain) == 0):
            raise IncompatibleComponentError(
                f"strategy '{self.name}' with retain_weight {p.retain_weight:g} needs a "
                "non-empty retain set; pass one, or set retain_weight: 0")

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        p: WGAParams = self.params  # type: ignore[assignment]
        losses, mask = adapter.token_losses(forget)
        forget_term = wga_loss(losses, mask, p.alpha)
        m = mask.to(losses.dtype)
        parts = {"wga_loss": forget_term,
                 "forget_loss": ((losses * m).sum(dim=1) / m.sum(dim=1)).mean()}
        total = forget_term
        if self.pair_with is not None:
            retain_loss = adapter.per_example_loss(retain).mean()
            total = total + p.retain_weight * retain_loss
            parts["retain_loss"] = retain_loss
        return {"loss": total, **parts}
