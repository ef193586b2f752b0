"""Maximum mean discrepancy between two feature sets, with Gaussian kernels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.losses import Loss, LossParams

if TYPE_CHECKING:
    import torch

__all__ = ["MMD", "MMDParams", "gaussian_kernel"]


class MMDParams(LossParams):
    """Parameters of the MMD loss."""

    bandwidth: list[float] | None = Field(
        None, description="Gaussian kernel widths sigma; several give a sum of kernels. "
        "None: one kernel whose sigma is the median pairwise distance of the pooled "
        "features (the median heuristic, computed without gradient).")
    estimator: Literal["biased", "unbiased"] = Field(
        "biased", description="'biased': the V-statistic MMD_b^2 (never negative); "
        "'unbiased': the U-statistic MMD_u^2 (drops the diagonal; may be slightly "
        "negative), Gretton et al.'s test statistic.")


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor, sigmas: list[float]) -> torch.Tensor:
    """``sum_s exp(-||a_i - b_j||^2 / (2 s^2))`` for every pair, shape ``[len(a), len(b)]``."""
    import torch

    # squared distances by expansion: cdist's gradient at a zero distance is not defined
    d2 = (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1).unsqueeze(0) - 2.0 * a @ b.T)
    d2 = d2.clamp(min=0.0)
    return sum(torch.exp(-d2 / (2.0 * s * s)) for s in sigmas)  # type: ignore[return-value]


class MMD(Loss):
    """Squared maximum mean discrepancy with a Gaussian kernel (Gretton et al., 2012).

    ``loss(x, y)`` for feature sets ``x`` (``[m, d]``) and ``y`` (``[n, d]``), with
    ``k(a, b) = exp(-||a - b||^2 / (2 sigma^2))`` (summed over ``bandwidth`` when it
    lists several widths)::

        biased:   MMD_b^2 = mean_ij k(x_i, x_j) + mean_ij k(y_i, y_j) - 2 mean_ij k(x_i, y_j)
        unbiased: MMD_u^2 = the same, with the diagonal terms i = j left out of the first
                  two means (averaged over m(m-1) and n(n-1) pairs)

    Zero when the two sets come from the same distribution (in expectation), larger the
    more they differ; gradients flow into both sets. Unlearning methods use it to make
    the forget set's features indistinguishable from held-out features, or to keep the
    retain features' distribution where it was.
    """

    name = "mmd"
    modalities = ("any",)
    needs = frozenset()
    Params = MMDParams
    paper = Paper(
        title="A Kernel Two-Sample Test",
        authors="Arthur Gretton, Karsten M. Borgwardt, Malte J. Rasch, Bernhard Schölkopf, "
        "Alexander Smola",
        year=2012,
        url="https://jmlr.org/papers/v13/gretton12a.html",
        venue="JMLR",
    )

    def bandwidths(self, x: torch.Tensor, y: torch.Tensor) -> list[float]:
        """The kernel widths used for ``x`` and ``y`` (the median heuristic if unset)."""
        import torch

        p: MMDParams = self.params  # type: ignore[assignment]
        if p.bandwidth is not None:
            if not p.bandwidth or any(s <= 0 for s in p.bandwidth):
                raise IncompatibleComponentError(
                    f"loss 'mmd': bandwidth must list positive widths, got {p.bandwidth}")
            return list(p.bandwidth)
        with torch.no_grad():
            pooled = torch.cat([x, y]).detach()
            d = torch.cdist(pooled, pooled)
            off = d[~torch.eye(len(pooled), dtype=torch.bool, device=d.device)]
            median = float(torch.quantile(off.double(), 0.5)) if off.numel() else 0.0
        return [median if median > 0 else 1.0]

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p: MMDParams = self.params  # type: ignore[assignment]
        x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
        if x.shape[1] != y.shape[1]:
            raise IncompatibleComponentError(
                f"loss 'mmd': the feature sets differ in width ({x.shape[1]} and {y.shape[1]})")
        m, n = len(x), len(y)
        need = 2 if p.estimator == "unbiased" else 1
        if m < need or n < need:
            raise IncompatibleComponentError(
                f"loss 'mmd' ({p.estimator}) needs at least {need} examples in each set; got "
                f"{m} and {n}")
        sigmas = self.bandwidths(x, y)
        kxx, kyy, kxy = (gaussian_kernel(x, x, sigmas), gaussian_kernel(y, y, sigmas),
                         gaussian_kernel(x, y, sigmas))
        if p.estimator == "biased":
            return kxx.mean() + kyy.mean() - 2.0 * kxy.mean()
        xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
        yy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
        return xx + yy - 2.0 * kxy.mean()
