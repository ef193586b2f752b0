"""CRAIG: weighted coreset whose gradients cover the forget set's per-example gradients."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.builtin.selectors._features import (
    FacilityLocation,
    FeatureSelectorParams,
    forget_data,
    greedy_maximize,
    make_selection,
    sq_distances,
)
from erasus.components import Paper
from erasus.selection import Selection, Selector, resolve_budget

if TYPE_CHECKING:
    import numpy as np

    from erasus.adapters import ModelAdapter

__all__ = ["Craig", "CraigParams", "craig_weights"]


class CraigParams(FeatureSelectorParams):
    """Parameters of CRAIG selection."""

    param_group: str | list[str] | None = Field(
        None, description="Parameters whose per-example loss gradients are compared: None "
        "for every trainable parameter, the name of one of the model's parameter groups "
        "('head' on a classifier is the paper's last-layer proxy for deep networks), or a "
        "list of parameter names.")
    lazy: bool = Field(
        True, description="Lazy (Minoux) greedy, as in the paper; False runs the plain "
        "greedy (same selection, more gain evaluations).")


def craig_weights(dist: np.ndarray, order: list[int]) -> np.ndarray:
    """How many examples each chosen element represents (aligned with ``order``).

    Every example goes to its nearest chosen element (ties to the one chosen first); a
    chosen element always represents itself. The weights sum to ``len(dist)``.
    """
    import numpy as np

    chosen = np.asarray(order, dtype=np.int64)
    owner = dist[:, chosen].argmin(axis=1)
    owner[chosen] = np.arange(len(chosen))
    return np.bincount(owner, minlength=len(chosen)).astype(np.float64)


class Craig(Selector):
    """CRAIG: facility location on per-example gradient distances, with per-element weights.

    Computes each forget example's loss gradient ``g_i`` with respect to ``param_group``
    at the current weights (``erasus.gradients.per_example_grads``, eval mode; works on any
    adapter with a per-example loss) and the distances ``d_ij = ||g_i - g_j||``. It then
    maximises the facility-location function ``F(S) = sum_i max_{j in S} (D - d_ij)``,
    ``D = max d``, i.e. minimises ``sum_i min_{j in S} d_ij``, the paper's upper bound on
    the error of estimating the full gradient from the weighted coreset, with Minoux's lazy
    greedy (ties to the lowest index). Each selected element ``j`` gets the weight
    ``gamma_j`` = the number of forget examples whose nearest selected gradient is ``g_j``,
    so that ``sum_j gamma_j g_j`` approximates ``sum_i g_i`` and the weights sum to the
    forget set's size. Deterministic: the seed is unused.

    Score of a selected example: its weight ``gamma_j``, also in ``info["weights"]``
    (aligned with the returned, sorted indices). ``info`` also has the ``order``, the marginal
    ``gains`` (in that order), ``cover_distance`` (``sum_i min_{j in S} d_ij``) and the
    number of gain ``evaluations``. The selection is over the whole forget set (the paper
    also runs it per class). Memory: the ``n x P`` gradients (``P`` parameters
    differentiated: choose a small ``param_group`` on large models) and an ``n x n``
    distance matrix.
    """

    name = "craig"
    modalities = ("any",)
    needs = frozenset()
    Params = CraigParams
    paper = Paper(
        title="Coresets for Data-efficient Training of Machine Learning Models",
        authors="Baharan Mirzasoleiman, Jeff Bilmes, Jure Leskovec",
        year=2020,
        url="https://arxiv.org/abs/1906.01827",
        venue="ICML",
    )

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None) -> Selection:
        import numpy as np

        from erasus.gradients import per_example_grads

        p: CraigParams = self.params  # type: ignore[assignment]
        dataset, collate_fn = forget_data(forget, collate_fn)
        n = len(dataset)
        k = resolve_budget(p.budget, n)
        grads = per_example_grads(adapter, dataset, names=p.param_group,
                                  batch_size=p.batch_size, collate_fn=collate_fn)
        g = grads.detach().double().cpu().numpy()
        dist = np.sqrt(sq_distances(g))
        objective = FacilityLocation(dist.max() - dist)
        order, gains, evaluations = greedy_maximize(objective, n, k, lazy=p.lazy)
        weights = craig_weights(dist, order)
        cover = float(dist[:, order].min(axis=1).sum())
        selection = make_selection(order, weights, {
            "selector": self.name, "n_forget": n, "k": k, "gains": gains,
            "cover_distance": cover, "evaluations": evaluations,
            "grad_dim": int(g.shape[1])})
        selection.info["weights"] = [float(w) for w in selection.scores]  # type: ignore[index]
        return selection
