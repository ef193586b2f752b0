"""k-means coreset: the example nearest each of ``budget`` k-means centroids of the features."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    from erasus.adapters import ModelAdapter

__all__ = ["KMeansCoreset", "KMeansCoresetParams"]


class KMeansCoresetParams(FeatureSelectorParams):
    """Parameters of k-means coreset selection."""

    n_init: int = Field(
        10, ge=1, description="k-means++ restarts; the run with the lowest inertia is kept.")
    max_iter: int = Field(300, ge=1, description="Lloyd iterations per restart.")


class KMeansCoreset(Selector):
    """k-means on the model's features with k = budget; keep the example nearest each centroid.

    Computes one feature vector per forget example (``adapter.features``, eval mode) and
    runs ``sklearn.cluster.KMeans(n_clusters=k, init="k-means++", n_init, max_iter,
    random_state=seed)`` (Lloyd's algorithm). For each centroid, largest cluster first
    (ties to the lower centroid id), it keeps the not yet kept example nearest to the
    centroid (ties to the lowest index); that is the cluster's own nearest member unless
    clusters collapse onto duplicate points. The result is a set of medoid-like
    representatives, one per region of feature space.

    Score of a selected example: the size of its centroid's cluster (how many forget
    examples it stands for), so the scores sum to the forget set's size. ``info`` has the
    ``cluster_sizes`` (aligned with the returned indices), the ``inertia`` (sum of squared
    distances to the nearest centroid) and the ``order`` (largest cluster first). Indices
    are returned sorted. Needs an adapter that gives features; otherwise it raises
    ``IncompatibleComponentError``.

    References: Lloyd, "Least Squares Quantization in PCM" (1982); Arthur and
    Vassilvitskii, "k-means++: The Advantages of Careful Seeding" (SODA 2007).
    """

    name = "kmeans_coreset"
    modalities = ("any",)
    needs = frozenset()
    Params = KMeansCoresetParams
    paper = Paper(
        title="Least Squares Quantization in PCM",
        authors="Stuart P. Lloyd",
        year=1982,
        url="https://doi.org/10.1109/TIT.1982.1056489",
        venue="IEEE Transactions on Information Theory",
    )

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None) -> Selection:
        import warnings

        import numpy as np
        from sklearn.cluster import KMeans
        from sklearn.exceptions import ConvergenceWarning

        p: KMeansCoresetParams = self.params  # type: ignore[assignment]
        x, n, k = forget_features(self, adapter, forget, collate_fn)
        with warnings.catch_warnings(record=True) as caught:
            # fewer distinct points than k: sklearn warns and we still pick k distinct ones
            warnings.simplefilter("always", ConvergenceWarning)
            km = KMeans(n_clusters=k, init="k-means++", n_init=p.n_init, max_iter=p.max_iter,
                        random_state=int(seed) % 2**32).fit(x)
        sizes = np.bincount(km.labels_, minlength=k)
        dist = sq_distances(km.cluster_centers_, x)  # [k, n]
        taken = np.zeros(n, dtype=bool)
        order: list[int] = []
        scores: list[float] = []
        for c in np.argsort(-sizes, kind="stable"):
            row = np.where(taken, np.inf, dist[c])
            j = int(np.argmin(row))
            taken[j] = True
            order.append(j)
            scores.append(float(sizes[c]))
        perm = np.argsort(order, kind="stable")
        info: dict[str, Any] = {
            "selector": self.name, "seed": int(seed), "n_forget": n, "k": k,
            "inertia": float(km.inertia_),
            "cluster_sizes": [int(scores[i]) for i in perm]}
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                info["warning"] = "fewer distinct feature vectors than clusters"
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return make_selection(order, scores, info)
