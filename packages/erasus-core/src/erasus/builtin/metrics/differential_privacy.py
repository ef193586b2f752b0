"""Empirical differential-privacy lower bound from a membership attack's ROC."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric, MetricParams

__all__ = [
    "DifferentialPrivacy",
    "DifferentialPrivacyParams",
    "clopper_pearson_upper",
    "epsilon_lower_bound",
]


class DifferentialPrivacyParams(MetricParams):
    """Parameters of the empirical epsilon lower bound."""

    delta: float = Field(0.0, ge=0, lt=1, description="The delta of (epsilon, delta)-DP "
                         "the bound is stated for.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Probability with which the "
                              "bound holds (both Clopper-Pearson bounds together).")
    nonmember_split: str = Field(
        "test", description="Split whose examples are the non-members (held-out data).")


def clopper_pearson_upper(errors: Any, trials: int, alpha: float) -> Any:
    """One-sided Clopper-Pearson upper bound of a binomial rate at level ``alpha``.

    The ``1 - alpha`` quantile of ``Beta(errors + 1, trials - errors)`` (1 when every trial
    is an error): the true rate is below it with probability at least ``1 - alpha``.
    """
    import numpy as np
    from scipy.stats import beta

    k = np.asarray(errors, dtype=np.float64)
    safe_b = np.maximum(trials - k, 1.0)
    upper = beta.ppf(1.0 - alpha, k + 1.0, safe_b)
    return np.where(k >= trials, 1.0, upper)


def _epsilons(fpr: Any, fnr: Any, delta: float) -> Any:
    """Per-threshold ``max(log((1-d-FPR)/FNR), log((1-d-FNR)/FPR))``.

    ``+inf`` where a rate is 0 and the other side's numerator positive (no finite epsilon
    allows that test), ``-inf`` where a numerator is not positive (no constraint).
    """
    import numpy as np

    fpr = np.asarray(fpr, dtype=np.float64)
    fnr = np.asarray(fnr, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        num_a, num_b = 1.0 - delta - fpr, 1.0 - delta - fnr
        a = np.where(num_a > 0, np.log(np.where(num_a > 0, num_a, 1.0)) - np.log(fnr), -np.inf)
        b = np.where(num_b > 0, np.log(np.where(num_b > 0, num_b, 1.0)) - np.log(fpr), -np.inf)
    return np.maximum(a, b)


def epsilon_lower_bound(member_scores: Any, nonmember_scores: Any, *, delta: float = 0.0,
                        confidence: float = 0.95) -> dict[str, Any]:
    """The empirical epsilon lower bound of a threshold attack (higher score: "member").

    For every threshold ``t`` over the observed scores the attack says "member" when
    ``score >= t``; FPR is the share of non-members it flags and FNR the share of members
    it misses. (epsilon, delta)-DP forces ``FPR + e^eps FNR >= 1 - delta`` and ``FNR +
    e^eps FPR >= 1 - delta`` for every test, so each threshold gives ``eps >= max(log((1 -
    delta - FPR) / FNR), log((1 - delta - FNR) / FPR))``. The returned ``epsilon_lb``
    uses one-sided Clopper-Pearson upper bounds of FPR and FNR, each at level ``(1 -
    confidence) / 2`` (so both hold together with probability >= ``confidence``), and is
    the maximum over thresholds, floored at 0. (With the raw rates the bound would be
    infinite at any threshold that makes no error on one side, which a finite sample
    nearly always has: the confidence bounds are what make it a finite estimate.)
    """
    import numpy as np

    members = np.sort(np.asarray(member_scores, dtype=np.float64))
    nonmembers = np.sort(np.asarray(nonmember_scores, dtype=np.float64))
    n1, n0 = len(members), len(nonmembers)
    if n1 == 0 or n0 == 0:
        raise IncompatibleComponentError(
            "the epsilon lower bound needs member and non-member scores; one set is empty")
    thresholds = np.unique(np.concatenate([members, nonmembers]))
    fp = n0 - np.searchsorted(nonmembers, thresholds, side="left")  # non-members >= t
    fn = np.searchsorted(members, thresholds, side="left")  # members < t
    alpha = (1.0 - confidence) / 2.0
    fpr_hi = clopper_pearson_upper(fp, n0, alpha)
    fnr_hi = clopper_pearson_upper(fn, n1, alpha)
    eps = _epsilons(fpr_hi, fnr_hi, delta)
    best = int(np.argmax(eps))
    return {
        "epsilon_lb": max(0.0, float(eps[best])),
        "threshold": float(thresholds[best]),
        "fpr": float(fp[best] / n0), "fnr": float(fn[best] / n1),
        "fpr_upper": float(fpr_hi[best]), "fnr_upper": float(fnr_hi[best]),
        "n_members": int(n1), "n_nonmembers": int(n0),
        "delta": float(delta), "confidence": float(confidence),
    }


class DifferentialPrivacy(Metric):
    """Empirical epsilon lower bound (auditing DP) from a loss-threshold membership attack.

    The attack scores every example by ``-loss`` (the cached per-example losses), with
    the forget split as members and ``nonmember_split`` (default ``test``) as
    non-members, and :func:`epsilon_lower_bound` turns its ROC into the largest epsilon
    that (epsilon, ``delta``)-differential privacy of the forget set could not hide:
    ``dp_epsilon_lb = max over thresholds of max(log((1 - delta - FPR) / FNR), log((1 -
    delta - FNR) / FPR))``, floored at 0, where FPR and FNR are replaced by one-sided
    Clopper-Pearson upper bounds (each at level ``(1 - confidence) / 2``; jointly at
    ``confidence``), the hypothesis-testing view of DP of Kairouz et al. (2015) as used
    for auditing by Jagielski et al. (2020). After perfect unlearning the forget set is
    as unseen as test data and the bound is near 0; a large value means the forget set
    is still distinguishable. The threshold is chosen on the same scores the rates are
    measured on, so the bound is a slightly optimistic audit (as in a single-run audit,
    not a certified one); its details give the best threshold and the raw and bounded
    rates there.
    """

    name = "differential_privacy"
    modalities = ("any",)
    needs = frozenset()
    Params = DifferentialPrivacyParams
    paper = Paper(
        title="Auditing Differentially Private Machine Learning: How Private is Private SGD?",
        authors="Matthew Jagielski, Jonathan Ullman, Alina Oprea",
        year=2020,
        url="https://arxiv.org/abs/2006.07709",
        venue="NeurIPS",
    )
    outputs = ("dp_epsilon_lb",)
    scope = "model"

    def compute(self, ctx: Any) -> Measurement:
        from erasus.builtin.metrics._membership import member_losses

        p: DifferentialPrivacyParams = self.params  # type: ignore[assignment]
        members, nonmembers = member_losses(ctx, self.name, p.nonmember_split)
        audit = epsilon_lower_bound(-members, -nonmembers, delta=p.delta,
                                    confidence=p.confidence)
        return Measurement(values={"dp_epsilon_lb": audit["epsilon_lb"]},
                           details={**audit, "attack": "loss threshold (score = -loss)"})
