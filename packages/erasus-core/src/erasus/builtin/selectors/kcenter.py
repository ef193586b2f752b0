"""Greedy k-center: a coreset that covers the forget set's features with a small radius."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

__all__ = ["KCenter", "KCenterParams", "kcenter_greedy"]


class KCenterParams(FeatureSelectorParams):
    """Parameters of greedy k-center selection."""


def kcenter_greedy(x: np.ndarray, k: int, first: int) -> tuple[list[int], list[float]]:
    """Greedy k-center (farthest-first traversal) over the rows of ``x``.

    Starts at ``first``; each next center is the point farthest (Euclidean) from its
    nearest chosen center, ties to the lowest index. Returns the centers in order and the
    distance at which each was added; the first center's entry is the covering radius of
    ``{first}`` alone (its distance to the farthest point).
    """
    import numpy as np

    n = len(x)
    k = min(k, n)
    nearest = np.sqrt(sq_distances(x, x[first:first + 1])[:, 0])
    nearest[first] = 0.0
    order, added = [first], [float(nearest.max())]
    for _ in range(k - 1):
        j = int(np.argmax(nearest))
        order.append(j)
        added.append(float(nearest[j]))
        np.minimum(nearest, np.sqrt(sq_distances(x, x[j:j + 1])[:, 0]), out=nearest)
        nearest[j] = 0.0
    return order, added


class KCenter(Selector):
    """Greedy k-center on the model's features (Sener & Savarese's core-set selection).

    Computes one feature vector per forget example (``adapter.features``, eval mode) and
    runs the farthest-first traversal: the first center is
    ``numpy.random.default_rng(seed).integers(n)``; every next one is the example farthest
    (Euclidean) from its nearest chosen center, ties to the lowest index, until the budget
    is met. This is the greedy 2-approximation of the k-center problem: the largest
    distance from any example to its nearest selected one (the covering radius) is at most
    twice the best achievable with that many centers.

    Score of a selected example: the distance at which it was added (its distance to the
    nearest earlier center; for the first center, the covering radius of it alone), so
    scores do not increase along the greedy order. ``info`` has the ``order``, the final
    ``radius`` and the seed's ``first`` center. Indices are returned sorted. Needs an
    adapter that gives features (every bundled one does); otherwise it raises
    ``IncompatibleComponentError``.
    """

    name = "kcenter"
    modalities = ("any",)
    needs = frozenset()
    Params = KCenterParams
    paper = Paper(
        title="Active Learning for Convolutional Neural Networks: A Core-Set Approach",
        authors="Ozan Sener, Silvio Savarese",
        year=2018,
        url="https://arxiv.org/abs/1708.00489",
        venue="ICLR",
    )

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None) -> Selection:
        import numpy as np

        x, n, k = forget_features(self, adapter, forget, collate_fn)
        first = int(np.random.default_rng(int(seed)).integers(n))
        order, added = kcenter_greedy(x, k, first)
        radius = float(np.sqrt(sq_distances(x, x[order]).min(axis=1).max()))
        return make_selection(order, added, {
            "selector": self.name, "seed": int(seed), "n_forget": n, "k": k,
            "first": first, "radius": radius})
