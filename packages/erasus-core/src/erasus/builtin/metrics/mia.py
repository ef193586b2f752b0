"""Loss-threshold membership inference: ROC-AUC of forget vs held-out losses."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from erasus.components import Paper
from erasus.evaluation import Measurement, Metric, MetricParams

__all__ = ["LossMIA", "LossMIAParams"]


class LossMIAParams(MetricParams):
    """Parameters of the loss-threshold attack."""

    nonmember_split: str = Field(
        "test", description="Split whose examples are the non-members (held-out data).")


class LossMIA(Metric):
    """Loss-threshold membership inference (Yeom et al.): ROC-AUC, forget vs held-out.

    The attack scores each example by ``-loss`` (members tend to have low loss) using the
    cached per-example losses; the forget split is the members (label 1) and
    ``nonmember_split`` (default ``test``) the non-members (label 0). ``mia_auc`` is
    ``sklearn.metrics.roc_auc_score`` over every threshold: about 1.0 means the forget set
    is still recognisable as training data, about 0.5 means it looks like held-out data
    (the ideal after unlearning). The ROC curve is in the details (``roc``: ``fpr``,
    ``tpr``). Works for any adapter with a per-example loss.
    """

    name = "mia"
    modalities = ("any",)
    needs = frozenset()
    Params = LossMIAParams
    paper = Paper(
        title="Privacy Risk in Machine Learning: Analyzing the Connection to Overfitting",
        authors="Samuel Yeom, Irene Giacomelli, Matt Fredrikson, Somesh Jha",
        year=2018,
        url="https://arxiv.org/abs/1709.01604",
        venue="IEEE CSF",
    )
    outputs = ("mia_auc",)
    scope = "model"

    def compute(self, ctx: Any) -> Measurement:
        from erasus.builtin.metrics._membership import member_losses, roc

        p: LossMIAParams = self.params  # type: ignore[assignment]
        members, nonmembers = member_losses(ctx, self.name, p.nonmember_split)
        auc, fpr, tpr = roc(-members, -nonmembers)
        return Measurement(values={"mia_auc": auc},
                           details={"roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
                                    "n_members": len(members),
                                    "n_nonmembers": len(nonmembers)})
