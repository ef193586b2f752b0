"""Fisher forgetting: Gaussian noise shaped by the inverse Fisher of the retain data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.components import Paper
from erasus.strategy import Strategy, StrategyParams

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import History, RunContext, UnlearnData

__all__ = ["FisherForgetting", "FisherForgettingParams"]


class FisherForgettingParams(StrategyParams):
    """Parameters of Fisher forgetting (defaults suit the digits benchmark)."""

    alpha: float = Field(
        1e-6, gt=0, description="Noise scale: the noise covariance is alpha * F^-1.")
    max_inverse: float = Field(
        1e3, gt=0, description="Clamp on F^-1 per weight (as in the authors' code), so "
        "weights the retain data does not constrain get bounded noise, not infinite.")
    eps: float = Field(1e-8, gt=0, description="Added to F before inverting.")
    batch_size: int = Field(64, ge=1, description="Examples per batch of per-example "
                            "gradients.")


class FisherForgetting(Strategy):
    """Add Gaussian noise with covariance ``alpha * F^-1``, F the retain set's Fisher.

    ``F`` is the diagonal Fisher information of the model's predictive distribution on the
    retain set, ``F_i = mean_x sum_y p(y|x) (d log p(y|x) / d theta_i)^2`` (the expectation
    over labels computed exactly over every class, from per-example gradients), at the
    current (original) weights. Each trainable weight then becomes
    ``theta_i + sqrt(alpha * min(1 / (F_i + eps), max_inverse)) * n_i`` with
    ``n ~ N(0, I)`` drawn from a generator seeded by the run seed: weights the retain data
    pins down (large Fisher) barely move, weights only the forget data needed are
    scrambled, which destroys the information the forget set left in them. The
    Newton-step term of the paper's optimal quadratic scrubbing is left out, as in the
    authors' Fisher-forgetting code.

    Golatkar et al., "Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep
    Networks", CVPR 2020. Needs a classifier adapter (its Fisher takes labels from the
    model's predictive distribution).
    """

    name = "fisher_forgetting"
    modalities = ("classification",)
    needs = frozenset({"retain"})
    Params = FisherForgettingParams
    paper = Paper(
        title="Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep Networks",
        authors="Aditya Golatkar, Alessandro Achille, Stefano Soatto",
        year=2020,
        url="https://arxiv.org/abs/1911.04933",
        venue="CVPR",
    )
    effect = "raise_forget_loss"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        #: The noise variance of each weight (by parameter name), set by unlearn().
        self.variance: dict[str, torch.Tensor] | None = None
        #: The retain-set Fisher of each weight, set by unlearn().
        self.fisher: dict[str, torch.Tensor] | None = None

    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        import torch

        from erasus.builtin.strategies._importance import (
            classifier_classes,
            scatter,
            true_fisher,
        )
        from erasus.errors import IncompatibleComponentError
        from erasus.gradients import param_names
        from erasus.strategy import History

        p: FisherForgettingParams = self.params  # type: ignore[assignment]
        num_classes = classifier_classes(adapter, self.name,
                                         "takes its Fisher over the model's class labels")
        if data.retain is None or len(data.retain) == 0:
            raise IncompatibleComponentError(
                "strategy 'fisher_forgetting' needs the retain set's Fisher; provide a "
                "non-empty retain set")
        names = param_names(adapter)
        fisher = true_fisher(adapter, data.retain, names=names, num_classes=num_classes,
                             collate_fn=data.collate_fn, batch_size=p.batch_size)
        variance = p.alpha * (1.0 / (fisher + p.eps)).clamp(max=p.max_inverse)
        self.fisher = scatter(adapter, names, fisher)
        self.variance = scatter(adapter, names, variance)
        g = torch.Generator().manual_seed(int(run.seed))
        noise = torch.randn(variance.shape, generator=g, dtype=variance.dtype)
        step = scatter(adapter, names, variance.sqrt() * noise.to(variance.device))
        params = dict(adapter.model.named_parameters())
        with torch.no_grad():
            for name in names:
                params[name].add_(step[name].to(params[name]))
        return History()
