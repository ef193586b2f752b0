"""SimNPO: reference-free, length-normalised Negative Preference Optimization."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.builtin.strategies._likelihood import ForgetPlusRetain, target_likelihood
from erasus.components import Paper
from erasus.strategy import LoopParams

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter

__all__ = ["SimNPO", "SimNPOParams", "simnpo_loss"]


class SimNPOParams(LoopParams):
    """Parameters of SimNPO (defaults suit the digits benchmark)."""

    epochs: int = Field(5, ge=0, description="Passes over the forget set.")
    lr: float = Field(5e-4, gt=0, description="Learning rate.")
    beta: float = Field(
        2.5, gt=0, description="Inverse temperature of the preference loss (the paper uses "
        "2.5 on TOFU).")
    gamma: float = Field(
        0.0, ge=0, description="Reward margin gamma inside the sigmoid (the paper finds 0 "
        "best on TOFU; its code's 'delta' is gamma / beta).")
    retain_weight: float = Field(
        1.0, ge=0, description="Weight of the mean retain loss added to each step; 0 gives "
        "the forget term alone, which then needs no retain set.")


def simnpo_loss(log_prob: torch.Tensor, length: torch.Tensor, beta: float, gamma: float
                ) -> torch.Tensor:
    """``-(2 / beta) * mean(logsigmoid(-(beta / |y|) * log p(y|x) - gamma))``."""
    import torch.nn.functional as F

    return -(2.0 / beta) * F.logsigmoid(-(beta / length) * log_prob - gamma).mean()


class SimNPO(ForgetPlusRetain):
    """SimNPO (Fan et al. 2024): NPO without a reference model, normalised by target length.

    Each step minimises, over a forget batch,
    ``L = -(2 / beta) * mean logsigmoid(-(beta / |y|) * log p_theta(y|x) - gamma)``
    plus ``retain_weight * mean(loss(retain batch))`` (paired retain batches are drawn
    only when ``retain_weight > 0``). Unlike ``npo`` there is no reference likelihood
    (nothing is precomputed or kept), and the log-likelihood is divided by the target's
    length, so long and short targets are weighted alike.

    ``log p(y|x)`` and ``|y|`` come from :meth:`ModelAdapter.token_losses`:
    ``-(losses * mask).sum()`` and ``mask.sum()``. What the length is, per family: a
    classifier predicts ONE label, so ``|y| = 1`` and ``log p / |y|`` is minus the
    cross-entropy; a causal LM's ``|y|`` is the number of answer tokens (EOS included),
    so ``log p / |y|`` is minus the mean answer-token NLL; adapters that keep the
    default ``token_losses`` (diffusion) count the whole example as one target.
    ``forget_loss`` logs the mean per-example loss of the forget batch.
    """

    name = "simnpo"
    modalities = ("any",)
    needs = frozenset()
    Params = SimNPOParams
    paper = Paper(
        title="Simplicity Prevails: Rethinking Negative Preference Optimization for LLM "
        "Unlearning",
        authors="Chongyu Fan, Jiancheng Liu, Licong Lin, Jinghan Jia, Ruiqi Zhang, Song Mei, "
        "Sijia Liu",
        year=2025,
        url="https://arxiv.org/abs/2410.07163",
        venue="NeurIPS",
    )
    effect = "raise_forget_loss"

    def forget_terms(self, adapter: ModelAdapter, forget: dict[str, Any]
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        p: SimNPOParams = self.params  # type: ignore[assignment]
        lik = target_likelihood(adapter, forget)
        forget_term = simnpo_loss(lik.log_prob, lik.length, p.beta, p.gamma)
        return forget_term, {"simnpo_loss": forget_term, "forget_loss": lik.mean_loss()}
