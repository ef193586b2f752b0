"""Shared machinery of the geometry-based selectors (kcenter, herding, craig, glister,
submodular, kmeans_coreset): feature matrices, distances, similarity kernels, submodular
objectives, (lazy) greedy maximisation and building the :class:`Selection`.

Private to the built-in selectors; not a public API.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import Field

from erasus.builtin.selectors._grad_common import forget_data
from erasus.errors import IncompatibleComponentError
from erasus.selection import Selection, SelectorParams

if TYPE_CHECKING:
    import numpy as np

    from erasus.adapters import ModelAdapter
    from erasus.selection import Selector

__all__ = [
    "FacilityLocation",
    "FeatureSelectorParams",
    "GraphCut",
    "Objective",
    "facility_value",
    "feature_matrix",
    "forget_data",
    "forget_features",
    "greedy_maximize",
    "make_selection",
    "similarity_kernel",
    "sq_distances",
]

#: What to suggest when a model gives no feature vectors.
_NO_FEATURES_HINT = ("use a selector that needs only gradients or losses (craig, glister, "
                     "gradient_norm, grad_match, el2n) or 'random'")

# Candidates scored per block in the vectorised gain computations (bounds temporaries).
_BLOCK = 256


class FeatureSelectorParams(SelectorParams):
    """Parameters shared by the selectors that run the model over the forget set."""

    batch_size: int = Field(
        64, ge=1, description="Examples per forward (or gradient) pass over the forget set.")


def forget_features(selector: Selector, adapter: ModelAdapter, forget: Any, collate_fn: Any
                    ) -> tuple[np.ndarray, int, int]:
    """``(x, n, k)``: the :func:`feature_matrix` of the forget set (in batches of the
    selector's ``batch_size``), its size ``n`` and the selector's budget ``k`` resolved
    against it."""
    from erasus.selection import resolve_budget

    p: Any = selector.params
    dataset, collate_fn = forget_data(forget, collate_fn)
    n = len(dataset)
    x = feature_matrix(adapter, dataset, selector=selector.name, collate_fn=collate_fn,
                       batch_size=p.batch_size)
    return x, n, resolve_budget(p.budget, n)


def feature_matrix(adapter: ModelAdapter, dataset: Any, *, selector: str,
                   collate_fn: Any = None, batch_size: int = 64) -> np.ndarray:
    """The model's feature vector of every example, ``[n, d]`` float64 in dataset order.

    Runs ``adapter.features`` (or ``adapter.outputs(batch, features=True)["features"]``
    for adapters that only give features that way) in eval mode without gradients, with
    the batch's dataset indices under ``"index"`` as the evaluation context does, so
    adapters with per-example randomness (diffusion noise) see the same draws. The model's
    mode is restored; its weights are never touched.

    Raises:
        IncompatibleComponentError: the adapter gives no features (naming the adapter and
            the selectors that work without them), or the features are not finite.
    """
    import numpy as np
    import torch

    from erasus.data import index_loader

    model = adapter.model
    was_training = model.training
    model.eval()
    rows: list[np.ndarray] = []
    order: list[np.ndarray] = []
    try:
        loader = index_loader(dataset, batch_size=batch_size, collate_fn=collate_fn,
                              min_batch_size=adapter.min_batch_size)
        with torch.no_grad():
            for indices, raw in loader:
                batch = adapter.prepare_batch(raw)
                batch["index"] = indices.to(adapter.device)
                feats = _features(adapter, batch, selector)
                rows.append(feats.detach().float().reshape(len(indices), -1).cpu().numpy())
                order.append(indices.numpy())
    finally:
        model.train(was_training)
    if not rows:
        return np.zeros((0, 0))
    out = np.empty((len(dataset), rows[0].shape[1]), dtype=np.float64)
    out[np.concatenate(order)] = np.concatenate(rows)
    if not np.isfinite(out).all():
        raise IncompatibleComponentError(
            f"selector '{selector}': model '{adapter.name}' gave non-finite feature vectors "
            "for the forget set; check the model (a diverged checkpoint?) or "
            f"{_NO_FEATURES_HINT}")
    return out


def _features(adapter: ModelAdapter, batch: dict[str, Any], selector: str) -> Any:
    try:
        return adapter.features(batch)
    except IncompatibleComponentError as exc:
        first = exc
    try:
        feats = adapter.outputs(batch, features=True).get("features")
    except IncompatibleComponentError:
        feats = None
    if feats is None:
        raise IncompatibleComponentError(
            f"selector '{selector}' needs a feature vector per example, but model adapter "
            f"'{adapter.name}' gives none ({first}); {_NO_FEATURES_HINT}") from first
    return feats


def sq_distances(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances ``[len(a), len(b)]`` (``b = a`` gives an exact-zero
    diagonal), by the Gram identity in float64 and clipped at 0."""
    import numpy as np

    same = b is None
    b = a if b is None else b
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    np.maximum(d, 0.0, out=d)
    if same:
        np.fill_diagonal(d, 0.0)
        d = (d + d.T) / 2.0  # exactly symmetric, so greedy ties break the same both ways
    return d


def similarity_kernel(x: np.ndarray, metric: str, gamma: float | None = None
                      ) -> tuple[np.ndarray, dict[str, float]]:
    """A non-negative symmetric similarity matrix of the rows of ``x``, and its settings.

    ``"rbf"``: ``exp(-gamma * ||x_i - x_j||^2)`` with ``gamma`` defaulting to one over the
    median of the non-zero squared distances (the median heuristic); ``"cosine"``:
    ``(1 + cos(x_i, x_j)) / 2``, in [0, 1].
    """
    import numpy as np

    if metric == "rbf":
        d2 = sq_distances(x)
        if gamma is None:
            positive = d2[d2 > 0]
            gamma = 1.0 / float(np.median(positive)) if positive.size else 1.0
        return np.exp(-gamma * d2), {"gamma": float(gamma)}
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        unit = x / np.where(norms > 0, norms, 1.0)
        sim = np.clip((1.0 + unit @ unit.T) / 2.0, 0.0, 1.0)
        return (sim + sim.T) / 2.0, {}
    raise ValueError(f"unknown similarity metric {metric!r}; use 'rbf' or 'cosine'")


class Objective(Protocol):
    """A monotone or submodular set function, built up one element at a time."""

    def gains(self, candidates: np.ndarray) -> np.ndarray:
        """The marginal gain of adding each candidate to the current set."""
        ...

    def add(self, j: int) -> None:
        """Add element ``j`` to the current set."""
        ...


class FacilityLocation:
    """``f(S) = sum_i max_{j in S} sim[j, i]`` for a non-negative ``sim`` (``f({}) = 0``).

    ``sim[j, i]`` is how well candidate ``j`` represents point ``i``. Gains are computed
    row by row on contiguous rows, so a candidate's gain is bit-identical whether it is
    scored alone (lazy greedy) or with all others (plain greedy).
    """

    def __init__(self, sim: np.ndarray) -> None:
        import numpy as np

        self.sim = np.ascontiguousarray(sim, dtype=np.float64)
        self.best = np.zeros(self.sim.shape[1])

    def gains(self, candidates: np.ndarray) -> np.ndarray:
        import numpy as np

        out = np.empty(len(candidates))
        for start in range(0, len(candidates), _BLOCK):
            block = candidates[start:start + _BLOCK]
            out[start:start + len(block)] = np.maximum(self.sim[block] - self.best,
                                                       0.0).sum(axis=1)
        return out

    def add(self, j: int) -> None:
        import numpy as np

        np.maximum(self.best, self.sim[j], out=self.best)


class GraphCut:
    """``f(S) = sum_{i in V} sum_{j in S} sim[i, j] - lam * sum_{i in S} sum_{j in S} sim[i, j]``.

    For a symmetric non-negative ``sim``: the first term rewards elements similar to the
    whole set (representativeness), the second penalises similarity inside the selection
    (diversity). Submodular for ``lam >= 0``, monotone for ``lam <= 0.5``.
    """

    def __init__(self, sim: np.ndarray, lam: float) -> None:
        import numpy as np

        self.sim = np.ascontiguousarray(sim, dtype=np.float64)
        self.lam = float(lam)
        self.cover = self.sim.sum(axis=1)
        self.diag = np.diag(self.sim).copy()
        self.inside = np.zeros(len(self.sim))  # sum_{i in S} sim[i, j], for every j

    def gains(self, candidates: np.ndarray) -> np.ndarray:
        c = candidates
        return self.cover[c] - self.lam * (2.0 * self.inside[c] + self.diag[c])

    def add(self, j: int) -> None:
        self.inside += self.sim[j]

    def value(self, chosen: Any) -> float:
        import numpy as np

        s = np.asarray(list(chosen), dtype=np.int64)
        return float(self.cover[s].sum() - self.lam * self.sim[np.ix_(s, s)].sum())


def facility_value(sim: np.ndarray, chosen: Any) -> float:
    """The facility-location value ``sum_i max_{j in chosen} sim[j, i]`` of a set."""
    import numpy as np

    s = np.asarray(list(chosen), dtype=np.int64)
    return float(np.asarray(sim)[s].max(axis=0).sum()) if s.size else 0.0


def greedy_maximize(objective: Objective, n: int, k: int, *, lazy: bool = True
                    ) -> tuple[list[int], list[float], int]:
    """Greedily pick ``k`` of ``n`` elements, each time the one of largest marginal gain.

    Ties go to the lowest index. ``lazy`` is Minoux's accelerated greedy: stale gains kept
    in a max-heap are upper bounds on the current ones (submodularity), so only the top
    element is re-scored until a freshly scored element stays on top. For a submodular
    objective it returns exactly what the plain greedy returns, with fewer evaluations.

    Returns:
        ``(order, gains, evaluations)``: the chosen elements in order, the marginal gain
        of each when it was chosen, and how many single-element gains were computed.
    """
    import numpy as np

    order: list[int] = []
    gains: list[float] = []
    if k <= 0 or n <= 0:
        return order, gains, 0
    if not lazy:
        remaining = np.ones(n, dtype=bool)
        evaluations = 0
        for _ in range(min(k, n)):
            candidates = np.flatnonzero(remaining)
            g = objective.gains(candidates)
            evaluations += len(candidates)
            best = int(np.argmax(g))
            j = int(candidates[best])
            order.append(j)
            gains.append(float(g[best]))
            objective.add(j)
            remaining[j] = False
        return order, gains, evaluations
    first = objective.gains(np.arange(n))
    evaluations = n
    heap = [(-float(g), j) for j, g in enumerate(first)]
    heapq.heapify(heap)
    scored_at = np.zeros(n, dtype=np.int64)  # len(order) when each bound was computed
    while len(order) < min(k, n):
        neg, j = heapq.heappop(heap)
        if scored_at[j] == len(order):
            order.append(j)
            gains.append(-neg)
            objective.add(j)
            continue
        fresh = float(objective.gains(np.array([j]))[0])
        evaluations += 1
        scored_at[j] = len(order)
        heapq.heappush(heap, (-fresh, j))
    return order, gains, evaluations


def make_selection(order: Any, scores: Any, info: dict[str, Any]) -> Selection:
    """A :class:`Selection` with indices sorted ascending and each score kept with its
    index; ``info["order"]`` keeps the order in which the selector chose them."""
    import numpy as np

    order_arr = np.asarray(order, dtype=np.int64)
    score_arr = np.asarray(scores, dtype=np.float64)
    perm = np.argsort(order_arr, kind="stable")
    return Selection(indices=order_arr[perm], scores=score_arr[perm],
                     info={**info, "order": [int(i) for i in order_arr]})
