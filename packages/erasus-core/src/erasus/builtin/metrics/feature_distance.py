"""Feature distance of the unlearned model to the original's and the oracle's."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric, MetricParams

__all__ = ["FeatureDistance", "FeatureDistanceParams", "feature_distances", "linear_cka"]


class FeatureDistanceParams(MetricParams):
    """Parameters of the feature distance."""

    split: str = Field("forget", description="Split whose examples' features are compared.")


def linear_cka(x: Any, y: Any) -> float:
    """Linear centred kernel alignment of two feature matrices over the same examples."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    y = y - y.mean(axis=0, keepdims=True)
    cross = np.linalg.norm(y.T @ x) ** 2
    norm = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norm) if norm > 0 else 0.0


def feature_distances(a: Any, b: Any) -> dict[str, float]:
    """Mean L2 distance, mean cosine distance and linear CKA of paired feature rows."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    l2 = float(np.linalg.norm(a - b, axis=1).mean())
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cos = (a * b).sum(axis=1) / np.maximum(na * nb, 1e-12)
    return {"l2": l2, "cosine": float((1.0 - cos).mean()), "cka": linear_cka(a, b)}


class FeatureDistance(Metric):
    """How far the unlearned model's features on the forget set moved, against two references.

    A run metric: for every example of ``split`` (default ``forget``) it takes the
    feature vector (``outputs(features=True)``: the penultimate layer of a classifier, the
    adapter's embedding otherwise) of the unlearned model and of the original and the
    oracle, from the evaluation contexts of those models (their cached forward passes;
    no model is run twice), and reports for the unlearned model against each reference
    ``r``:

    - ``feature_l2_to_<r>``: the mean over examples of ``||f_unlearned(x) - f_r(x)||_2``;
    - ``feature_cosine_to_<r>``: the mean of ``1 - cos(f_unlearned(x), f_r(x))``;
    - ``feature_cka_to_<r>``: linear CKA (Kornblith et al., 2019) between the two feature
      matrices (1: the same representation up to rotation and scale, 0: unrelated).

    L2 and cosine compare coordinates, which is meaningful between a model and its own
    fine-tuned copy (unlearned vs original), not between independently initialised
    networks: a retrained oracle's features are an arbitrary rotation and permutation of
    the original's, so for the oracle read CKA, which is invariant to those. The details
    give the same three numbers for the oracle against the original (how far exact
    unlearning moves them) as a scale for the unlearned model's.
    """

    name = "feature_distance"
    modalities = ("any",)
    needs = frozenset({"oracle"})
    Params = FeatureDistanceParams
    paper = Paper(
        title="Similarity of Neural Network Representations Revisited",
        authors="Simon Kornblith, Mohammad Norouzi, Honglak Lee, Geoffrey Hinton",
        year=2019,
        url="https://arxiv.org/abs/1905.00414",
        venue="ICML",
    )
    outputs = tuple(f"feature_{k}_to_{r}" for r in ("original", "oracle")
                    for k in ("l2", "cosine", "cka"))
    scope = "run"

    def _features(self, ctx: Any, role: str) -> Any:
        import numpy as np

        p: FeatureDistanceParams = self.params  # type: ignore[assignment]
        context = ctx.context(role, self.name)
        try:
            out = context.outputs(p.split, features=True)
        except KeyError as exc:
            raise IncompatibleComponentError(
                f"metric 'feature_distance': {exc.args[0] if exc.args else exc}") from None
        if "features" not in out:
            raise IncompatibleComponentError(
                f"metric 'feature_distance' needs features, but the model adapter's outputs "
                f"have only {', '.join(sorted(out))}")
        feats = np.asarray(out["features"], dtype=np.float64)
        if len(feats) < 2:
            raise IncompatibleComponentError(
                f"metric 'feature_distance' needs at least 2 examples in '{p.split}'")
        order = np.argsort(np.asarray(out["index"]), kind="stable")
        return feats.reshape(len(feats), -1)[order]

    def compute(self, ctx: Any) -> Measurement:
        feats = {role: self._features(ctx, role) for role in ("unlearned", "original", "oracle")}
        widths = {role: f.shape[1] for role, f in feats.items()}
        if len(set(widths.values())) != 1:
            raise IncompatibleComponentError(
                f"metric 'feature_distance' compares features of equal width; got {widths}")
        values: dict[str, float] = {}
        for ref in ("original", "oracle"):
            for key, value in feature_distances(feats["unlearned"], feats[ref]).items():
                values[f"feature_{key}_to_{ref}"] = value
        oracle_vs_original = feature_distances(feats["oracle"], feats["original"])
        return Measurement(values=values,
                           details={"oracle_to_original": oracle_vs_original,
                                    "n_examples": len(feats["unlearned"])})
