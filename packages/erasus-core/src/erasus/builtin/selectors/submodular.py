"""Submodular coreset: facility location or graph cut over a feature similarity kernel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.builtin.selectors._features import (
    FacilityLocation,
    FeatureSelectorParams,
    GraphCut,
    facility_value,
    forget_features,
    greedy_maximize,
    make_selection,
    similarity_kernel,
)
from erasus.components import Paper
from erasus.selection import Selection, Selector

if TYPE_CHECKING:
    from erasus.adapters import ModelAdapter

__all__ = ["Submodular", "SubmodularParams"]


class SubmodularParams(FeatureSelectorParams):
    """Parameters of submodular (facility location / graph cut) selection."""

    function: Literal["facility_location", "graph_cut"] = Field(
        "facility_location", description="The set function maximised: 'facility_location' "
        "(sum over all examples of the similarity to their most similar selected one) or "
        "'graph_cut' (similarity to the whole set minus lambda times similarity inside the "
        "selection).")
    lam: float = Field(
        0.5, ge=0, description="Graph cut's lambda >= 0: the weight of the penalty on "
        "similarity among selected examples. 0 picks the examples most similar to the whole "
        "set (representativeness only); larger values favour diversity. The first term "
        "grows with the forget set's size n and the penalty with the selection's size k, "
        "so diversity dominates once lambda is of the order of n / k. Up to 0.5 the "
        "function is monotone; above it an addition can lower it (the greedy still picks "
        "budget examples). Ignored by facility location.")
    metric: Literal["rbf", "cosine"] = Field(
        "rbf", description="Similarity kernel on features: 'rbf' exp(-gamma ||a - b||^2), "
        "or 'cosine' (1 + cos(a, b)) / 2; both lie in [0, 1].")
    gamma: float | None = Field(
        None, gt=0, description="RBF width; default one over the median squared distance "
        "between forget features. Ignored for 'cosine'.")
    lazy: bool = Field(
        True, description="Lazy (Minoux) greedy; False runs the plain greedy, which gives "
        "the same selection with more gain evaluations.")


class Submodular(Selector):
    """Greedy maximisation of a submodular function of the coreset over feature similarity.

    Computes one feature vector per forget example (``adapter.features``, eval mode) and
    the similarity matrix ``s`` of the chosen ``metric`` (both kernels are non-negative and
    symmetric). It then greedily adds, ``budget`` times, the example with the largest
    marginal gain of

    - ``facility_location``: ``f(S) = sum_{i} max_{j in S} s_ij`` (every example is
      represented by its most similar selected one), or
    - ``graph_cut``: ``f(S) = sum_{i in V} sum_{j in S} s_ij - lam sum_{i, j in S} s_ij``
      (``lam`` trades representativeness against diversity; see its description),

    with Minoux's lazy greedy (stale gains are upper bounds by submodularity, so only the
    top of a max-heap is re-scored), ties to the lowest index. For monotone submodular
    ``f`` the greedy is within ``1 - 1/e`` of the best set of that size (Nemhauser, Wolsey
    and Fisher 1978). Deterministic: the seed is unused.

    Score of a selected example: its marginal gain when chosen (non-increasing along the
    greedy order; they add up to the objective). ``info`` has the ``order``, the
    ``objective`` value, the number of gain ``evaluations`` and the kernel's ``gamma``.
    Indices are returned sorted. Memory: an ``n x n`` similarity matrix. Needs an adapter
    that gives features; otherwise it raises ``IncompatibleComponentError``.

    References: Wei, Iyer and Bilmes, "Submodularity in Data Subset Selection and Active
    Learning" (ICML 2015); Minoux, "Accelerated Greedy Algorithms for Maximizing Submodular
    Set Functions" (1978); graph cut as in Lin and Bilmes (NAACL 2010) and submodlib.
    """

    name = "submodular"
    modalities = ("any",)
    needs = frozenset()
    Params = SubmodularParams
    paper = Paper(
        title="Submodularity in Data Subset Selection and Active Learning",
        authors="Kai Wei, Rishabh Iyer, Jeff Bilmes",
        year=2015,
        url="https://proceedings.mlr.press/v37/wei15.html",
        venue="ICML",
    )

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None) -> Selection:
        p: SubmodularParams = self.params  # type: ignore[assignment]
        x, n, k = forget_features(self, adapter, forget, collate_fn)
        sim, settings = similarity_kernel(x, p.metric, p.gamma)
        if p.function == "facility_location":
            objective: FacilityLocation | GraphCut = FacilityLocation(sim)
        else:
            objective = GraphCut(sim, p.lam)
        order, gains, evaluations = greedy_maximize(objective, n, k, lazy=p.lazy)
        value = (facility_value(sim, order) if isinstance(objective, FacilityLocation)
                 else objective.value(order))
        return make_selection(order, gains, {
            "selector": self.name, "n_forget": n, "k": k, "function": p.function,
            "metric": p.metric, **settings, "objective": value, "evaluations": evaluations})
