"""Contrastive unlearning loss: forget embeddings pushed off their class, toward others."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.losses import Loss, LossParams

if TYPE_CHECKING:
    import torch

__all__ = ["ContrastiveUnlearning", "ContrastiveUnlearningParams"]


class ContrastiveUnlearningParams(LossParams):
    """Parameters of the contrastive unlearning loss."""

    temperature: float = Field(0.5, gt=0, description="Softmax temperature tau of the "
                               "similarities.")
    normalize: bool = Field(True, description="L2-normalise the features first, so "
                            "similarities are cosines (the paper's projection head does).")


class ContrastiveUnlearning(Loss):
    """Contrastive unlearning (Lee et al.): InfoNCE with the forget examples as anchors.

    ``loss(forget_features, forget_labels, retain_features, retain_labels)``. Each forget
    embedding ``z_u`` (L2-normalised when ``normalize``) is an anchor; retain embeddings of
    a *different* class ``D(u)`` are its positives and retain embeddings of the *same*
    class ``S(u)`` its negatives::

        l(u) = -1/|D(u)| sum_{p in D(u)} [z_u.z_p / tau - log sum_{n in S(u)} exp(z_u.z_n / tau)]

    and the loss is the mean of ``l(u)`` over the anchors with at least one positive.
    Minimising it pulls the forget embeddings toward the other classes' retain
    embeddings and pushes them away from their own class's, so the forget examples lose
    what made them recognisable as their class while the retain embeddings (the keys)
    stay as they are (the paper adds cross-entropy on the retain batch for that; combine
    this loss with it in the strategy). When ``S(u)`` is empty (class-wise forgetting:
    no retain example shares the class) the log term is 0, as in the authors' code for
    single-class unlearning, and only the pull toward the other classes remains.
    """

    name = "contrastive"
    modalities = ("any",)
    needs = frozenset({"retain"})
    Params = ContrastiveUnlearningParams
    paper = Paper(
        title="Contrastive Unlearning: A Contrastive Approach to Machine Unlearning",
        authors="Hong kyu Lee, Qiuchen Zhang, Carl Yang, Jian Lou, Li Xiong",
        year=2024,
        url="https://arxiv.org/abs/2401.10458",
        venue="arXiv (IJCAI 2025)",
    )

    def __call__(self, forget_features: torch.Tensor, forget_labels: torch.Tensor,
                 retain_features: torch.Tensor, retain_labels: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        p: ContrastiveUnlearningParams = self.params  # type: ignore[assignment]
        if forget_features.ndim != 2 or retain_features.ndim != 2 or \
                forget_features.shape[1] != retain_features.shape[1]:
            raise IncompatibleComponentError(
                "loss 'contrastive' needs [n, d] forget and retain feature matrices of the "
                f"same width; got {tuple(forget_features.shape)} and "
                f"{tuple(retain_features.shape)}")
        zu, zr = forget_features, retain_features
        if p.normalize:
            zu, zr = F.normalize(zu, dim=1), F.normalize(zr, dim=1)
        sim = zu @ zr.T / p.temperature  # [n_forget, n_retain]
        same = forget_labels.reshape(-1, 1) == retain_labels.reshape(1, -1)
        different = ~same
        # log sum over same-class keys; an empty sum contributes 0 (see the docstring)
        masked = sim.masked_fill(~same, float("-inf"))
        log_negatives = torch.logsumexp(masked, dim=1)
        log_negatives = torch.where(same.any(dim=1), log_negatives,
                                    torch.zeros_like(log_negatives))
        n_pos = different.sum(dim=1)
        per_anchor = -((sim * different).sum(dim=1) / n_pos.clamp(min=1) - log_negatives)
        has_pos = n_pos > 0
        if not bool(has_pos.any()):
            # no anchor has a different-class key in this batch: no contrast to draw
            return sim.sum() * 0.0
        return per_anchor[has_pos].mean()
