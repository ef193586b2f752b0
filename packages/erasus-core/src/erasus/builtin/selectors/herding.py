"""Herding: a coreset whose feature mean tracks the whole forget set's mean."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.builtin.selectors._features import (
    FeatureSelectorParams,
    forget_features,
    make_selection,
    sq_distances,
)
from erasus.components import Paper
from erasus.selection import Selection, Selector

if TYPE_CHECKING:
    import numpy as np

    from erasus.adapters import ModelAdapter

__all__ = ["Herding", "HerdingParams", "herding_order"]


class HerdingParams(FeatureSelectorParams):
    """Parameters of herding selection."""

    kernel: Literal["linear", "rbf"] = Field(
        "linear", description="'linear': feature-mean herding (iCaRL); 'rbf': kernel herding "
        "with a Gaussian kernel (Chen et al. 2010).")
    gamma: float | None = Field(
        None, gt=0, description="RBF kernel width exp(-gamma ||a - b||^2); default one over "
        "the median squared distance between forget features. Ignored for 'linear'.")
    normalize: bool = Field(
        True, description="Scale each feature vector to unit L2 norm first (as iCaRL does).")


def herding_order(x: np.ndarray, k: int, kernel: str = "linear", gamma: float | None = None
                  ) -> tuple[list[int], list[float], float | None]:
    """Greedy herding over the rows of ``x``: ``(order, mmd, gamma)``.

    Step ``t`` adds the unselected row that minimises the maximum mean discrepancy between
    the selected rows and all rows under the kernel (``linear``: the distance between the
    selected mean and the full mean), ties to the lowest index. ``mmd[t]`` is that
    discrepancy after step ``t``.
    """
    import numpy as np

    n = len(x)
    k = min(k, n)
    if kernel == "linear":
        mu = x.mean(axis=0)
        m = x @ mu  # k(x, .) averaged over the set
        diag = (x * x).sum(axis=1)
        total = float(mu @ mu)
        gram = None
    else:
        d2 = sq_distances(x)
        if gamma is None:
            positive = d2[d2 > 0]
            gamma = 1.0 / float(np.median(positive)) if positive.size else 1.0
        gram = np.exp(-gamma * d2)
        m = gram.mean(axis=1)
        diag = np.diag(gram).copy()
        total = float(m.mean())
    acc = np.zeros(n)  # sum over the selected s of k(x, s), for every x
    free = np.ones(n, dtype=bool)
    order: list[int] = []
    mmd: list[float] = []
    sum_m = 0.0
    sum_kk = 0.0
    for step in range(1, k + 1):
        # MMD^2(S + x) = total - 2 (sum_m + m(x)) / t + (sum_kk + 2 acc(x) + k(x, x)) / t^2
        value = (-2.0 * (sum_m + m) / step
                 + (sum_kk + 2.0 * acc + diag) / step ** 2)
        value[~free] = np.inf
        j = int(np.argmin(value))
        order.append(j)
        sum_m += float(m[j])
        sum_kk += float(2.0 * acc[j] + diag[j])
        mmd.append(float(np.sqrt(max(total + float(value[j]), 0.0))))
        free[j] = False
        acc += gram[j] if gram is not None else x @ x[j]
    return order, mmd, gamma


class Herding(Selector):
    """Herding on the model's features: the running mean of the coreset tracks the full mean.

    Computes one feature vector per forget example (``adapter.features``, eval mode;
    unit-normalised when ``normalize``, as in iCaRL). With the ``linear`` kernel, step
    ``t`` adds the unselected example ``x`` minimising
    ``|| mean(features) - (sum of the t-1 selected features + features(x)) / t ||``
    (iCaRL's exemplar herding, Welling's herding with a linear kernel). With ``rbf`` it is
    kernel herding: ``x`` maximises ``mean_i k(x, x_i) - sum_{s in S} k(x, s) / t`` for
    the Gaussian kernel ``k``, i.e. greedily minimises the maximum mean discrepancy to the
    whole set. Ties go to the lowest index; no randomness (the seed is unused).

    Score of a selected example: ``k - rank`` (``k`` for the first one chosen, 1 for the
    last), so sorting by score gives the herding order. ``info`` has the ``order`` and
    ``mmd``: the distance between the coreset and the full set (in the kernel's feature
    space) after each step. Indices are returned sorted. Needs an adapter that gives
    features; otherwise it raises ``IncompatibleComponentError``.

    References: Welling, "Herding Dynamical Weights to Learn" (ICML 2009); Chen, Welling and
    Smola, "Super-Samples from Kernel Herding" (UAI 2010); Rebuffi et al., "iCaRL:
    Incremental Classifier and Representation Learning" (CVPR 2017).
    """

    name = "herding"
    modalities = ("any",)
    needs = frozenset()
    Params = HerdingParams
    paper = Paper(
        title="Herding Dynamical Weights to Learn",
        authors="Max Welling",
        year=2009,
        url="https://doi.org/10.1145/1553374.1553517",
        venue="ICML",
    )

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None) -> Selection:
        import numpy as np

        p: HerdingParams = self.params  # type: ignore[assignment]
        x, n, k = forget_features(self, adapter, forget, collate_fn)
        if p.normalize:
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            x = x / np.where(norms > 0, norms, 1.0)
        order, mmd, gamma = herding_order(x, k, p.kernel, p.gamma)
        info: dict[str, Any] = {"selector": self.name, "n_forget": n, "k": k,
                                "kernel": p.kernel, "mmd": mmd}
        if gamma is not None:
            info["gamma"] = gamma
        return make_selection(order, [float(k - r) for r in range(len(order))], info)
