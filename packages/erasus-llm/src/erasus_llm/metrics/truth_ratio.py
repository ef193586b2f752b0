"""Truth ratio (TOFU): how much likelier the perturbed (wrong) answers are than the right one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from erasus.evaluation import Measurement
from pydantic import Field

from erasus_llm.metrics._base import TOFU, SplitMetric, SplitMetricParams

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PARAPHRASED_SPLITS", "TruthRatio", "TruthRatioParams", "closer_to_one",
           "true_better", "truth_ratio_values", "truth_ratios"]

#: Splits whose correct answer is the paraphrase (TOFU's forget and retain sets); the
#: others (real authors, world facts) compare with the answer itself.
PARAPHRASED_SPLITS = ("forget", "forget_perturbed", "retain", "retain_perturbed")


def truth_ratios(correct_mean_logp: Any, wrong_mean_logp: list[Any]) -> np.ndarray:
    """Per question ``TR = p_wrong / p_correct``.

    ``p_correct = exp(mean token log-prob of the correct answer)`` and ``p_wrong`` the
    geometric mean over the perturbed answers of their length-normalised probabilities,
    ``exp(mean_j mean token log-prob of a'_j)`` (computed in log space).
    """
    import numpy as np

    correct = np.asarray(correct_mean_logp, dtype=np.float64)
    wrong = np.array([float(np.mean(w)) for w in wrong_mean_logp])
    return np.exp(wrong - correct)


def closer_to_one(tr: Any) -> float:
    """TOFU's forget-set score ``mean(min(TR, 1/TR))``: 1 when right and wrong answers are
    equally likely (nothing left to tell them apart)."""
    import numpy as np

    tr = np.asarray(tr, dtype=np.float64)
    return float(np.mean(np.minimum(tr, 1.0 / tr)))


def true_better(tr: Any) -> float:
    """TOFU's score on the other sets ``mean(max(0, 1 - TR))``: high when the right answer
    is much likelier than the wrong ones."""
    import numpy as np

    return float(np.mean(np.maximum(0.0, 1.0 - np.asarray(tr, dtype=np.float64))))


def truth_ratio_values(ctx: Any, split: str, correct_field: str, metric: str,
                       wrong_field: str = "perturbed_answer") -> np.ndarray:
    """Per-question truth ratios of the context's model on ``split`` (cached passes)."""
    from erasus_llm.metrics._cache import token_stats

    correct = token_stats(ctx, split, correct_field, metric=metric)
    wrong = token_stats(ctx, split, wrong_field, metric=metric)
    return truth_ratios(correct.mean_logp(), wrong.per_example(wrong.mean_logp()))


class TruthRatioParams(SplitMetricParams):
    """Parameters of the truth ratio."""

    splits: list[str] = Field(default_factory=lambda: ["forget_perturbed"], min_length=1,
                              description="Splits whose items carry 'perturbed_answer' "
                              "lists (and 'paraphrased_answer' where used).")
    paraphrased_splits: list[str] = Field(
        default_factory=lambda: list(PARAPHRASED_SPLITS),
        description="Splits whose correct answer is 'paraphrased_answer' (TOFU's forget and "
        "retain sets); on the others it is 'answer' (real authors, world facts).")


class TruthRatio(SplitMetric):
    """Truth ratio (TOFU, Maini et al. 2024) with both published aggregations.

    Per question ``TR = p_wrong / p_correct``: ``p_wrong`` is the geometric mean of the
    perturbed answers' length-normalised probabilities and ``p_correct`` that of the
    paraphrased answer (forget/retain sets, ``paraphrased_splits``) or of the answer
    (other sets). Each split reports both aggregations, named explicitly:

    - ``<split>_truth_ratio_closer_to_one`` = ``mean(min(TR, 1/TR))``, TOFU's forget-set
      score (open-unlearning's ``closer_to_1_better``);
    - ``<split>_truth_ratio_true_better`` = ``mean(max(0, 1 - TR))``, its score on the
      retain, real-authors and world-facts sets (``true_better``).

    The per-question ratios are in the details (``truth_ratios``), which ``forget_quality``
    can read back as an oracle's results file.
    """

    name = "truth_ratio"
    Params = TruthRatioParams
    paper = TOFU
    suffixes = ("truth_ratio_closer_to_one", "truth_ratio_true_better")
    outputs = ("forget_perturbed_truth_ratio_closer_to_one",
               "forget_perturbed_truth_ratio_true_better")

    def compute(self, ctx: Any) -> Measurement:
        p: TruthRatioParams = self.params  # type: ignore[assignment]
        values, details = {}, {}
        for split in p.splits:
            field = "paraphrased_answer" if split in p.paraphrased_splits else "answer"
            tr = truth_ratio_values(ctx, split, field, self.name)
            values[f"{split}_truth_ratio_closer_to_one"] = closer_to_one(tr)
            values[f"{split}_truth_ratio_true_better"] = true_better(tr)
            details[split] = {"correct_field": field, "truth_ratios": tr.tolist()}
        return Measurement(values=values, details=details)
