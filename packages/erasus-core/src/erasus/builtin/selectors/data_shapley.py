"""Data Shapley: truncated Monte Carlo Shapley values of the forget examples."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.components import Paper
from erasus.selection import Selection, Selector, SelectorParams

if TYPE_CHECKING:
    import numpy as np

    from erasus.adapters import ModelAdapter
    from erasus.selection import SelectionContext

__all__ = ["DataShapleyParams", "DataShapleySelector", "KNNUtility", "tmc_shapley"]


class DataShapleyParams(SelectorParams):
    """Parameters of the Data Shapley selector."""

    validation: str = Field(
        "test", description="Split the utility is measured on: 'test', 'retain' or an "
        "extra split of the selection context (test_forgotten_class...).")
    k_neighbors: int = Field(
        5, ge=1, description="k of the k-nearest-neighbour classifier whose validation "
        "performance is the utility.")
    utility: Literal["likelihood", "accuracy"] = Field(
        "likelihood", description="Validation performance of the k-NN classifier: the "
        "mean share of each validation point's k nearest neighbours with its label (smooth: "
        "every mislabelled neighbour costs) or the accuracy of their majority vote.")
    max_permutations: int = Field(
        200, ge=1, description="Monte Carlo permutations of the forget set (each one adds "
        "the examples in a random order and records their marginal contributions).")
    truncation_tolerance: float = Field(
        0.01, ge=0.0, description="A permutation is truncated once the utility of its "
        "prefix is within this fraction of the whole forget set's utility: later examples "
        "get marginal contribution 0.")
    truncation_patience: int = Field(
        5, ge=1, description="Consecutive prefixes within the tolerance needed before "
        "truncating (guards against a lucky prefix).")
    prefer: Literal["high", "low"] = Field(
        "high", description="Select the highest Shapley values (the most useful examples) "
        "or the lowest (harmful ones: mislabelled or outlying).")


class KNNUtility:
    """The utility of a growing training subset for a k-NN classifier on a validation set.

    ``add(j)`` puts training example ``j`` into the subset and returns the new utility;
    each validation point keeps its ``k`` nearest subset members, so one addition costs
    ``O(V k)``. ``likelihood``: the mean over validation points of the number of their
    (at most ``k``) nearest members with the right label, divided by ``k`` (the k-NN
    classifier's probability of the true label; 0 for the empty set). ``accuracy``: the
    share of validation points whose neighbours' majority label is right (ties go to the
    nearest neighbour's label).
    """

    def __init__(self, distances: np.ndarray, train_labels: np.ndarray,
                 val_labels: np.ndarray, k: int, num_classes: int,
                 kind: str = "likelihood") -> None:
        self.distances = distances  # [V, n]
        self.train_labels = train_labels
        self.val_labels = val_labels
        self.k = k
        self.num_classes = num_classes
        self.kind = kind
        self.reset()

    def reset(self) -> None:
        import numpy as np

        v = len(self.val_labels)
        self.top_d = np.full((v, self.k), np.inf)
        self.top_l = np.full((v, self.k), -1, dtype=np.int64)
        self.counts = np.zeros((v, self.num_classes), dtype=np.int64)
        self.near_d = np.full(v, np.inf)
        self.near_l = np.full(v, -1, dtype=np.int64)
        self.correct = np.zeros(v, dtype=bool)

    def empty_value(self) -> float:
        """The utility of the empty subset: 0 (likelihood) or a random guess's accuracy."""
        return 0.0 if self.kind == "likelihood" else 1.0 / self.num_classes

    def add(self, j: int) -> float:
        import numpy as np

        d = self.distances[:, j]
        label = int(self.train_labels[j])
        worst = self.top_d.argmax(axis=1)
        rows = np.flatnonzero(d < self.top_d[np.arange(len(d)), worst])
        if rows.size:
            cols = worst[rows]
            evicted = self.top_l[rows, cols]
            had = evicted >= 0
            np.subtract.at(self.counts, (rows[had], evicted[had]), 1)
            self.counts[rows, label] += 1
            self.top_d[rows, cols] = d[rows]
            self.top_l[rows, cols] = label
            if self.kind == "accuracy":
                closer = d[rows] < self.near_d[rows]
                self.near_d[rows[closer]] = d[rows[closer]]
                self.near_l[rows[closer]] = label
                votes = self.counts[rows].astype(np.float64)
                votes[np.arange(rows.size), self.near_l[rows]] += 0.5  # tie: the nearest
                self.correct[rows] = votes.argmax(axis=1) == self.val_labels[rows]
        if self.kind == "accuracy":
            return float(self.correct.mean())
        right = self.counts[np.arange(len(self.val_labels)), self.val_labels]
        return float(right.mean() / self.k)


def tmc_shapley(utility: KNNUtility, n: int, *, permutations: int, tolerance: float,
                patience: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Truncated Monte Carlo Shapley values of ``n`` players (Ghorbani & Zou, Alg. 1).

    Each permutation adds the players in a random order (``numpy.random.default_rng(seed)``)
    and credits each with its marginal utility gain; once ``patience`` consecutive prefixes
    are within ``tolerance * |V(D)|`` of the full set's utility ``V(D)``, the rest of the
    permutation is truncated (marginal contribution 0). Values are the mean marginal
    contributions over the permutations.
    """
    import numpy as np

    rng = np.random.default_rng(int(seed))
    utility.reset()
    for j in range(n):
        full = utility.add(j)
    total = np.zeros(n)
    evaluated = 0
    for _ in range(permutations):
        utility.reset()
        prev = utility.empty_value()
        close = 0
        for j in rng.permutation(n):
            new = utility.add(int(j))
            evaluated += 1
            total[j] += new - prev
            prev = new
            close = close + 1 if abs(full - new) <= tolerance * abs(full) else 0
            if close >= patience:
                break
    stats = {"full_utility": full, "empty_utility": utility.empty_value(),
             "mean_prefix_length": evaluated / permutations}
    return total / permutations, stats


class DataShapleySelector(Selector):
    """Rank forget examples by their truncated Monte Carlo Data Shapley value.

    Ghorbani & Zou (2019), TMC-Shapley (Algorithm 1): the players are the forget examples
    and the utility ``V(S)`` of a subset is the validation performance of a
    k-nearest-neighbour classifier (``k_neighbors``, Euclidean distance) on ``S``'s
    features and labels; k-NN is one of the learners the paper values data with, and is
    cheap and exact to update one example at a time. ``utility: likelihood`` (default)
    scores each validation point by the share of its k nearest members of ``S`` that carry
    its label, divided by ``k`` (the k-NN utility of Jia et al. 2019, "Efficient
    Task-Specific Data Valuation for Nearest Neighbor Algorithms"; ``V(empty) = 0``), so
    every mislabelled neighbour costs utility; ``accuracy`` is the majority vote's accuracy
    (``V(empty) = 1 / num_classes``, a random guess). Features are the adapter's
    per-example representation (``outputs(features=True)``: a classifier's penultimate
    activations) of the frozen model, labels the examples' own labels; the validation set
    is the ``validation`` split of the selection context (default ``test``, held-out data
    as in the paper). Each of ``max_permutations`` random orders (seeded by the seed)
    credits every example with its marginal utility gain, and is truncated (later examples
    get 0) once ``truncation_patience`` consecutive prefixes are within
    ``truncation_tolerance`` (relative) of the whole forget set's utility. The score is
    the mean marginal contribution; ``prefer: high`` selects the most valuable examples,
    ``low`` the least (negative values mark mislabelled or harmful points). ``info`` holds
    every forget example's value. Classification models only (the utility needs labels).
    Cost: one ``[validation, forget]`` distance matrix, and ``O(validation * k)`` per
    example added, times the (truncated) permutation lengths.
    """

    name = "data_shapley"
    modalities = ("classification",)
    needs = frozenset({"test"})
    Params = DataShapleyParams
    paper = Paper(
        title="Data Shapley: Equitable Valuation of Data for Machine Learning",
        authors="Amirata Ghorbani, James Zou",
        year=2019,
        url="https://arxiv.org/abs/1904.02868",
        venue="ICML",
    )

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None, context: SelectionContext | None = None
               ) -> Selection:
        import numpy as np

        from erasus.builtin.selectors._valuation import labelled_features, select_by_value

        p: DataShapleyParams = self.params  # type: ignore[assignment]
        x, y, xv, yv, num_classes = labelled_features(adapter, forget, collate_fn, context,
                                                      p.validation, self.name)
        n = len(y)
        sq = (xv * xv).sum(1)[:, None] + (x * x).sum(1)[None, :] - 2.0 * xv @ x.T
        distances = np.sqrt(np.maximum(sq, 0.0))
        utility = KNNUtility(distances, y, yv, int(p.k_neighbors), num_classes, p.utility)
        values, stats = tmc_shapley(
            utility, n, permutations=int(p.max_permutations),
            tolerance=float(p.truncation_tolerance),
            patience=int(p.truncation_patience), seed=seed)
        return select_by_value(
            self.name, values, prefer=p.prefer, budget=p.budget, seed=seed,
            validation=p.validation, n_validation=len(yv),
            permutations=int(p.max_permutations),
            **{key: float(v) for key, v in stats.items()})
