"""Weighted gradient ascent (WGA): ascent weighted by the model's own confidence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.builtin.strategies._likelihood import ForgetPlusRetain, target_likelihood
from erasus.components import Paper
from erasus.strategy import LoopParams

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter

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


class WGA(ForgetPlusRetain):
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

    def forget_terms(self, adapter: ModelAdapter, forget: dict[str, Any]
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        p: WGAParams = self.params  # type: ignore[assignment]
        lik = target_likelihood(adapter, forget)
        forget_term = wga_loss(lik.losses, lik.mask, p.alpha)
        return forget_term, {"wga_loss": forget_term, "forget_loss": lik.mean_loss()}
