"""Answer probability (TOFU): exp of the mean log-likelihood of the answer's tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from erasus.evaluation import Measurement
from pydantic import Field

from erasus_llm.metrics._base import TOFU, SplitMetric, SplitMetricParams

if TYPE_CHECKING:
    import numpy as np

__all__ = ["AnswerProb", "AnswerProbParams", "answer_probability", "normalised_probability"]


def answer_probability(mean_logp: Any) -> np.ndarray:
    """``exp(mean token log-prob)`` per answer: ``P(y|x)^(1/|y|)``, TOFU's probability."""
    import numpy as np

    return np.exp(np.asarray(mean_logp, dtype=np.float64))


def normalised_probability(correct_mean_logp: Any, wrong_mean_logp: list[Any]) -> np.ndarray:
    """``p(a) / (p(a) + sum_j p(a'_j))`` per question, each ``p`` length-normalised.

    TOFU's probability on the real-authors and world-facts sets: the answer's
    probability normalised over the answer and its perturbed alternatives.
    """
    import numpy as np

    correct = answer_probability(correct_mean_logp)
    wrong = np.array([answer_probability(w).sum() for w in wrong_mean_logp])
    return correct / (correct + wrong)


class AnswerProbParams(SplitMetricParams):
    """Parameters of the answer probability."""

    field: str = Field("answer", description="Item field holding the answer scored.")
    normalised: bool = Field(
        False, description="Normalise over the answer and its 'perturbed_answer' "
        "alternatives (TOFU's probability on real authors and world facts); values are "
        "then named '<split>_answer_prob_normalised'.")


class AnswerProb(SplitMetric):
    """Answer probability (TOFU, Maini et al. 2024): mean over questions of
    ``exp(-mean token NLL of the answer)``.

    The answer tokens only (the question is masked), EOS included, with the model
    adapter's templates; per question in the details (``per_question``). With
    ``normalised`` each question's value is ``p(a) / (p(a) + sum_j p(a'_j))`` over the
    perturbed answers. Read from the cached one-pass token statistics.
    """

    name = "answer_prob"
    Params = AnswerProbParams
    paper = TOFU
    suffixes = ("answer_prob",)
    outputs = ("forget_answer_prob",)

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        if self.params.normalised:
            self.outputs = tuple(f"{s}_answer_prob_normalised"  # type: ignore[misc]
                                 for s in self.params.splits)

    def compute(self, ctx: Any) -> Measurement:
        from erasus_llm.metrics._cache import token_stats

        p: AnswerProbParams = self.params  # type: ignore[assignment]
        values, details = {}, {}
        for split, out in zip(p.splits, self.outputs, strict=True):
            stats = token_stats(ctx, split, p.field, metric=self.name)
            if p.normalised:
                wrong = token_stats(ctx, split, "perturbed_answer", metric=self.name)
                probs = normalised_probability(stats.mean_logp(),
                                               wrong.per_example(wrong.mean_logp()))
            else:
                probs = answer_probability(stats.mean_logp())
            values[out] = float(probs.mean())
            details[split] = {"per_question": probs.tolist()}
        return Measurement(values=values, details=details)
