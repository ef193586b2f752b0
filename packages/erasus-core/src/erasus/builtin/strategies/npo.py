"""Negative Preference Optimization (NPO): a bounded, reference-relative forget loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.builtin.strategies._likelihood import ForgetPlusRetain, target_likelihood
from erasus.components import Paper
from erasus.strategy import LoopParams

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import RunContext, UnlearnData

__all__ = ["NPO", "NPOParams", "npo_loss", "sequence_log_probs"]


class NPOParams(LoopParams):
    """Parameters of NPO (defaults suit the digits benchmark)."""

    epochs: int = Field(5, ge=0, description="Passes over the forget set.")
    lr: float = Field(5e-4, gt=0, description="Learning rate.")
    beta: float = Field(
        1.0, gt=0, description="Inverse temperature of the preference loss; as beta -> 0 NPO "
        "becomes gradient ascent (the paper uses 0.1 on TOFU).")
    retain_weight: float = Field(
        2.0, ge=0, description="Weight of the mean retain loss added to each step (NPO+RT); "
        "0 gives plain NPO, which then needs no retain set.")


def npo_loss(log_prob: torch.Tensor, ref_log_prob: torch.Tensor, beta: float) -> torch.Tensor:
    """``(2 / beta) * mean(log(1 + (p / p_ref) ** beta))`` from sequence log-likelihoods.

    Computed as ``-(2 / beta) * mean(logsigmoid(-beta * (log_prob - ref_log_prob)))``,
    which is the same quantity without overflow.
    """
    import torch.nn.functional as F

    return -(2.0 / beta) * F.logsigmoid(-beta * (log_prob - ref_log_prob)).mean()


class NPO(ForgetPlusRetain):
    """NPO (Zhang et al. 2024): push the forget set's likelihood below the original's, boundedly.

    Each step minimises, over a forget batch,
    ``L_NPO = (2 / beta) * mean log(1 + (p_theta(y|x) / p_ref(y|x)) ** beta)``
    plus ``retain_weight * mean(loss(retain batch))`` (NPO+RT; paired retain batches are
    drawn only when ``retain_weight > 0``). ``log p(y|x)`` is the target's log-likelihood
    through the adapter: ``-(losses * mask).sum()`` of :meth:`ModelAdapter.token_losses`,
    i.e. minus the cross-entropy for a classifier, minus the SUM of the answer-token NLLs
    for a causal LM (the paper's sequence likelihood, not the per-token mean that
    ``per_example_loss`` reports), and minus the denoising error, an ELBO surrogate, for
    diffusion models.

    The reference ``p_ref`` is the model as it is when unlearning starts (the original):
    ``prepare`` runs it once over the forget set in eval mode and stores
    ``log p_ref(y|x)`` per forget example, keyed by its position (``batch["index"]``),
    so no second copy of the model is kept in memory. The gradient of ``L_NPO`` is that
    of gradient ascent scaled per example by ``2 p^beta / (p^beta + p_ref^beta)``, which
    goes to zero as an example is forgotten: the divergence of gradient ascent is
    avoided. ``forget_loss`` logs the mean per-example loss of the forget batch.
    """

    name = "npo"
    modalities = ("any",)
    needs = frozenset()
    Params = NPOParams
    paper = Paper(
        title="Negative Preference Optimization: From Catastrophic Collapse to Effective "
        "Unlearning",
        authors="Ruiqi Zhang, Licong Lin, Yu Bai, Song Mei",
        year=2024,
        url="https://arxiv.org/abs/2404.05868",
        venue="COLM",
    )
    effect = "raise_forget_loss"
    no_retain_hint = "set retain_weight: 0 for plain NPO"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        #: ``log p_ref(y|x)`` of every forget example, by position (set by prepare()).
        self.ref_log_prob: torch.Tensor | None = None

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        super().prepare(adapter, data, run)
        p: NPOParams = self.params  # type: ignore[assignment]
        self.ref_log_prob = sequence_log_probs(adapter, data.forget, data.collate_fn,
                                               p.batch_size)

    def forget_terms(self, adapter: ModelAdapter, forget: dict[str, Any]
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.ref_log_prob is None:
            raise RuntimeError("npo: prepare() must run before loss()")
        p: NPOParams = self.params  # type: ignore[assignment]
        lik = target_likelihood(adapter, forget)
        ref = self.ref_log_prob.to(lik.log_prob.device)[forget["index"]]
        forget_npo = npo_loss(lik.log_prob, ref, p.beta)
        return forget_npo, {"npo_loss": forget_npo, "forget_loss": lik.mean_loss()}


def sequence_log_probs(adapter: ModelAdapter, dataset: Any, collate_fn: Any,
                       batch_size: int) -> torch.Tensor:
    """``log p(y|x)`` of every example of ``dataset`` (in order) under the adapter's current
    weights, in eval mode and without gradients; a float32 CPU tensor."""
    import torch

    from erasus.data import index_loader

    model = adapter.model
    was_training = model.training
    model.eval()
    out = torch.zeros(len(dataset), dtype=torch.float32)
    try:
        with torch.no_grad():
            for indices, raw in index_loader(dataset, batch_size=batch_size,
                                             collate_fn=collate_fn,
                                             min_batch_size=adapter.min_batch_size):
                batch = adapter.prepare_batch(raw)
                batch["index"] = indices.to(adapter.device)
                out[indices] = target_likelihood(adapter, batch).log_prob.float().cpu()
    finally:
        model.train(was_training)
    return out
