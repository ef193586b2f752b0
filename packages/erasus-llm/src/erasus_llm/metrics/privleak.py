"""PrivLeak (MUSE): the Min-K% membership AUC of the unlearned model relative to the oracle's."""

from __future__ import annotations

from typing import Any

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric
from pydantic import Field

from erasus_llm.metrics.mia import MinKParams, attack_scores, mia_auc

__all__ = ["PrivLeak", "PrivLeakParams", "privleak"]

#: Added to the denominator, as open-unlearning does, so an oracle AUC of exactly 1 (a
#: degenerate oracle) gives a large finite value instead of a division by zero.
EPS = 1e-10


def privleak(auc: float, oracle_auc: float) -> float:
    """``((1 - AUC) - (1 - AUC_oracle)) / (1 - AUC_oracle) * 100``: 0 is ideal; negative
    when the forget set is more recognisable than for the oracle (under-unlearning),
    positive when less (over-unlearning)."""
    return ((1.0 - auc) - (1.0 - oracle_auc)) / (1.0 - oracle_auc + EPS) * 100.0


class PrivLeakParams(MinKParams):
    """Parameters of PrivLeak."""

    oracle_auc: float | None = Field(
        None, ge=0, le=1, description="The oracle's Min-K% AUC on the same forget/holdout "
        "sets from a stored result; used instead of an oracle model.")


class PrivLeak(Metric):
    """PrivLeak (MUSE, Shi et al. 2025) on the Min-K% attack (``k`` = 0.4).

    A run metric: ``AUC`` is the Min-K% ROC-AUC of the forget set (members) against
    ``holdout_split`` (non-members), from each model's cached token statistics, and
    ``privleak = ((1 - AUC) - (1 - AUC_oracle)) / (1 - AUC_oracle) * 100`` with the oracle's
    AUC from the run's oracle model, or ``oracle_auc`` when given. ``privleak`` is the
    unlearned model's, ``privleak_original`` the original's (when the run has one). On
    MUSE set ``forget_split: privleak_forget``, ``holdout_split: privleak_holdout`` and
    ``field: text`` (plain-text items scored whole).
    """

    name = "privleak"
    modalities = ("text",)
    needs = frozenset()
    Params = PrivLeakParams
    paper = Paper(title="MUSE: Machine Unlearning Six-Way Evaluation for Language Models",
                  authors="Weijia Shi, Jaechan Lee, Yangsibo Huang, Sadhika Malladi, Jieyu "
                  "Zhao, Ari Holtzman, Daogao Liu, Luke Zettlemoyer, Noah A. Smith, Chiyuan "
                  "Zhang", year=2025, url="https://arxiv.org/abs/2407.06460", venue="ICLR")
    outputs = ("privleak", "privleak_original")
    scope = "run"

    def _auc(self, ctx: Any, role: str) -> float:
        from erasus_llm.metrics._cache import token_stats

        p: PrivLeakParams = self.params  # type: ignore[assignment]
        rctx = ctx.context(role, self.name)
        members = token_stats(rctx, p.forget_split, p.field, metric=self.name)
        others = token_stats(rctx, p.holdout_split, p.field, metric=self.name)
        return mia_auc(attack_scores(members, "min_k", p.k),
                       attack_scores(others, "min_k", p.k))

    def compute(self, ctx: Any) -> Measurement:
        p: PrivLeakParams = self.params  # type: ignore[assignment]
        contexts = getattr(ctx, "contexts", {}) or {}
        if p.oracle_auc is not None:
            oracle = float(p.oracle_auc)
        elif "oracle" in contexts:
            oracle = self._auc(ctx, "oracle")
        else:
            raise IncompatibleComponentError(
                "metric 'privleak' compares with the oracle's Min-K% AUC, but this evaluation "
                "has no oracle model and privleak's oracle_auc is not set; set oracle: "
                "{strategy: retrain} (or oracle.path), or oracle_auc")
        auc = self._auc(ctx, "unlearned")
        values = {"privleak": privleak(auc, oracle)}
        details: dict[str, Any] = {"auc": auc, "oracle_auc": oracle}
        if "original" in contexts:
            details["original_auc"] = self._auc(ctx, "original")
            values["privleak_original"] = privleak(details["original_auc"], oracle)
        return Measurement(values=values, details=details)
