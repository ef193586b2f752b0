"""Selective synaptic dampening: shrink the weights far more important to the forget set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.components import Paper
from erasus.strategy import Strategy, StrategyParams

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import History, RunContext, UnlearnData

__all__ = ["SSD", "SSDParams"]


class SSDParams(StrategyParams):
    """Parameters of selective synaptic dampening (the paper's defaults)."""

    alpha: float = Field(
        10.0, gt=0, description="Selection threshold: a weight is dampened when its "
        "forget-set importance exceeds alpha times its full-data importance.")
    lam: float = Field(
        1.0, gt=0, description="Dampening constant lambda: a selected weight is multiplied "
        "by min(lambda * I_D / I_f, 1).")
    batch_size: int = Field(
        64, ge=1, description="Examples per mini-batch of the importance estimate (the "
        "squared gradient of each batch's mean loss, averaged over batches).")


class SSD(Strategy):
    """Selective synaptic dampening: ``theta_i *= min(lam * I_D,i / I_f,i, 1)`` where
    ``I_f,i > alpha * I_D,i``.

    The importances are the diagonal Fisher information at the current (original) weights,
    estimated as in the authors' code: the squared gradient of each mini-batch's mean loss
    (``per_example_loss``, ``batch_size`` consecutive examples), averaged over the batches
    of a set; ``I_f`` over the forget set and ``I_D`` over the full training data (the
    retain set followed by the forget set). (A per-example estimate could never select
    anything at the default ``alpha`` once the forget set is a tenth of the data or more:
    the full-data mean includes the forget examples, so ``I_f <= (n / n_forget) I_D``.)
    Every weight whose forget importance exceeds ``alpha`` times its full-data importance
    is multiplied by ``beta = min(lam * I_D / I_f, 1)``; the others are left untouched. No
    gradient step, no training: one pass over each set.

    Foster et al., "Fast Machine Unlearning Without Retraining Through Selective Synaptic
    Dampening", AAAI 2024 (defaults alpha = 10, lambda = 1 as in the paper).
    """

    name = "ssd"
    modalities = ("any",)
    needs = frozenset({"retain"})
    Params = SSDParams
    paper = Paper(
        title="Fast Machine Unlearning Without Retraining Through Selective Synaptic "
        "Dampening",
        authors="Jack Foster, Stefan Schoepf, Alexandra Brintrup",
        year=2024,
        url="https://arxiv.org/abs/2308.07707",
        venue="AAAI",
    )
    effect = "raise_forget_loss"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        #: The factor each weight was multiplied by (1 where not selected), set by unlearn().
        self.factors: dict[str, torch.Tensor] | None = None

    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        import torch
        from torch.utils.data import ConcatDataset

        from erasus.builtin.strategies._importance import batch_fisher, scatter
        from erasus.errors import IncompatibleComponentError
        from erasus.gradients import param_names
        from erasus.strategy import History

        p: SSDParams = self.params  # type: ignore[assignment]
        if data.retain is None or len(data.retain) == 0:
            raise IncompatibleComponentError(
                "strategy 'ssd' compares forget-set with full-data importances; provide "
                "the retain set (the full data is retain + forget)")
        names = param_names(adapter)
        imp_f = batch_fisher(adapter, data.forget, names=names, batch_size=p.batch_size,
                             collate_fn=data.collate_fn)
        imp_d = batch_fisher(adapter, ConcatDataset([data.retain, data.forget]), names=names,
                             batch_size=p.batch_size, collate_fn=data.collate_fn)
        selected = imp_f > p.alpha * imp_d
        factor = torch.ones_like(imp_f)
        factor[selected] = (p.lam * imp_d[selected] / imp_f[selected]).clamp(max=1.0)
        self.factors = scatter(adapter, names, factor)
        params = dict(adapter.model.named_parameters())
        with torch.no_grad():
            for name in names:
                params[name].mul_(self.factors[name].to(params[name]))
        return History()
