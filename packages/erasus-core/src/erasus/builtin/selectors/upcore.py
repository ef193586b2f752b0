"""UPCORE: prune the outlying forget points with an isolation forest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.components import Paper
from erasus.selection import Selection, Selector, SelectorParams, resolve_budget

if TYPE_CHECKING:
    from erasus.adapters import ModelAdapter

__all__ = ["UpcoreParams", "UpcoreSelector"]


class UpcoreParams(SelectorParams):
    """Parameters of the UPCORE selector."""

    contamination: float = Field(
        0.1, gt=0.0, le=0.5, description="Share of the forget set the isolation forest "
        "flags as outliers (pruned): sklearn IsolationForest's contamination.")
    n_estimators: int = Field(100, ge=1, description="Trees in the isolation forest.")
    max_samples: int | float | Literal["auto"] = Field(
        "auto", description="Examples drawn to grow each tree (sklearn's max_samples: "
        "'auto' = min(256, n), an int count or a float fraction).")


class UpcoreSelector(Selector):
    """Prune the forget set's outliers in representation space, keep the core (UPCORE).

    Patil, Stengel-Eskin & Bansal (2025): outlying forget points make unlearning damage
    the model's other abilities more, so UPCORE fits an isolation forest on the forget
    points' hidden representations and unlearns only the inliers. Representations are the
    model's per-example features (``outputs(features=True)``: a classifier's penultimate
    activations, a language model's last hidden state mean-pooled over its tokens, as the
    paper does for LLMs), standardised per dimension. A
    ``sklearn.ensemble.IsolationForest(contamination, n_estimators, max_samples,
    random_state=seed)`` flags ``contamination`` of the points as outliers; they are
    pruned. The budget is then taken from the inliers, most typical first (score = minus
    the forest's anomaly score, i.e. ``score_samples``). When the budget asks for more
    than the inliers (budget 1.0, say), the remaining places go to the outliers, least
    anomalous first, and ``info["outliers_kept"]`` says how many; UPCORE's own coreset is
    a budget of ``1 - contamination``. ``info["outliers"]`` lists every flagged position.
    """

    name = "upcore"
    modalities = ("any",)
    needs = frozenset()
    Params = UpcoreParams
    paper = Paper(
        title="UPCORE: Utility-Preserving Coreset Selection for Balanced Unlearning",
        authors="Vaidehi Patil, Elias Stengel-Eskin, Mohit Bansal",
        year=2025,
        url="https://arxiv.org/abs/2502.15082",
        venue="arXiv",
    )

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None) -> Selection:
        import numpy as np
        from sklearn.ensemble import IsolationForest

        from erasus.builtin.selectors._valuation import embed, ranked
        from erasus.data import unwrap

        p: UpcoreParams = self.params  # type: ignore[assignment]
        dataset, _, _ = unwrap(forget)
        n = len(dataset)
        x, _ = embed(adapter, dataset, collate_fn, component=self.name)
        x = (x - x.mean(0)) / (x.std(0) + 1e-8)
        forest = IsolationForest(n_estimators=p.n_estimators, max_samples=p.max_samples,
                                 contamination=p.contamination, random_state=int(seed))
        inlier = forest.fit_predict(x) == 1
        normality = forest.score_samples(x)  # higher: more normal (minus the anomaly score)
        # the forest flags exactly the points whose normality is below its offset, so
        # ranking by normality takes every inlier (most typical first) before any outlier
        k = resolve_budget(p.budget, n)
        chosen = ranked(normality, k, seed)
        outliers = np.flatnonzero(~inlier)
        return Selection(
            indices=chosen, scores=normality[chosen].astype(np.float64),
            info={"selector": self.name, "n_forget": n, "k": k,
                  "contamination": p.contamination, "n_inliers": int(inlier.sum()),
                  "outliers": [int(i) for i in outliers],
                  "outliers_kept": int((~inlier[chosen]).sum())})
