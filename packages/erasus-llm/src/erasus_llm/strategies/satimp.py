"""SatImp: gradient ascent with per-token weights p^beta1 (1 - p)^beta2 (saturation, importance)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.strategy import LoopParams, LossStrategy
from pydantic import Field

if TYPE_CHECKING:
    import torch
    from erasus.adapters import ModelAdapter
    from erasus.strategy import RunContext, UnlearnData

__all__ = ["SatImp", "SatImpParams", "satimp_weights"]


class SatImpParams(LoopParams):
    """Parameters of SatImp (defaults suit the tiny causal LM)."""

    epochs: int = Field(5, ge=0, description="Passes over the forget set.")
    lr: float = Field(1e-3, gt=0, description="Learning rate (the paper: 1e-5 on 7B models).")
    batch_size: int = Field(8, ge=1, description="Examples per batch of each set.")
    beta1: float = Field(5.0, ge=0, description="Exponent of the saturation weight p^beta1 "
                         "(open-unlearning's default 5).")
    beta2: float = Field(1.0, ge=0, description="Exponent of the importance weight "
                         "(1 - p)^beta2 (open-unlearning's default 1).")
    retain_weight: float = Field(
        0.1, ge=0, description="Weight of the retain set's mean answer NLL (open-unlearning's "
        "alpha, default 0.1); 0: forget term only, no retain set needed.")


def satimp_weights(token_nll: torch.Tensor, beta1: float, beta2: float) -> torch.Tensor:
    """``p ** beta1 * (1 - p) ** beta2`` with ``p = exp(-token_nll)``, without gradient."""
    p = (-token_nll.detach()).exp()
    return p ** beta1 * (1 - p) ** beta2


class SatImp(LossStrategy):
    """SatImp (Yang et al. 2025): gradient ascent weighted per token by its probability.

    Each step minimises, over a forget batch, ``-mean_t w_t * NLL_t`` with per-token
    weights ``w_t = p_t^beta1 (1 - p_t)^beta2`` (``p_t`` the probability of answer token
    ``t``, no gradient through the weight): the saturation factor ``p^beta1`` lowers the
    weight of tokens already forgotten (so ascent does not run away on them), the
    importance factor ``(1 - p)^beta2`` that of tokens the model is sure of. The mean is
    over each example's answer tokens (question masked, EOS included), then over the
    batch; with ``retain_weight > 0`` the retain set's mean answer NLL is added, as in
    open-unlearning's SatImp. Token losses come from :meth:`ModelAdapter.token_losses`.
    ``forget_loss`` logs the forget batch's mean answer NLL.
    """

    name = "satimp"
    modalities = ("text",)
    needs = frozenset()
    Params = SatImpParams
    paper = Paper(
        title="Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning",
        authors="Puning Yang, Qizhou Wang, Zhuo Huang, Tongliang Liu, Chengqi Zhang, Bo Han",
        year=2025,
        url="https://arxiv.org/abs/2505.11953",
        venue="ICML",
    )
    effect = "raise_forget_loss"
    epoch_over = "forget"
    pair_with = "retain"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: SatImpParams = self.params  # type: ignore[assignment]
        self.pair_with = "retain" if p.retain_weight > 0 else None

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        p: SatImpParams = self.params  # type: ignore[assignment]
        if self.pair_with and (data.retain is None or len(data.retain) == 0):
            raise IncompatibleComponentError(
                f"strategy '{self.name}' with retain_weight {p.retain_weight:g} needs a "
                "non-empty retain set; pass one, or set retain_weight: 0")

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        p: SatImpParams = self.params  # type: ignore[assignment]
        assert forget is not None
        nll, mask = adapter.token_losses(forget)
        mask = mask.to(nll.dtype)
        length = mask.sum(dim=1)
        weights = satimp_weights(nll, p.beta1, p.beta2)
        forget_term = -((weights * nll * mask).sum(dim=1) / length).mean()
        total = forget_term
        parts = {"satimp_loss": forget_term,
                 "forget_loss": ((nll * mask).sum(dim=1) / length).mean().detach()}
        if self.pair_with is not None:
            retain_loss = adapter.per_example_loss(retain).mean()  # type: ignore[arg-type]
            total = total + p.retain_weight * retain_loss
            parts["retain_loss"] = retain_loss
        return {"loss": total, **parts}
