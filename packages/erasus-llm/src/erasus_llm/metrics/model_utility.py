"""Model utility (TOFU): the harmonic mean of nine retain / real-authors / world-facts numbers."""

from __future__ import annotations

from typing import Any

from erasus.evaluation import Measurement, Metric, MetricParams
from pydantic import Field

from erasus_llm.metrics._base import TOFU

__all__ = ["ModelUtility", "ModelUtilityParams", "harmonic_mean"]


def harmonic_mean(values: list[float]) -> float:
    """``n / sum(1/x)``; 0 when any value is 0 (the limit, as ``scipy.stats.hmean``)."""
    if any(v <= 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


class ModelUtilityParams(MetricParams):
    """Parameters of model utility."""

    retain_split: str = Field("retain_perturbed", description="Retain questions with "
                              "paraphrased and perturbed answers (TOFU's retain_perturbed).")
    real_authors_split: str = Field("real_authors", description="Real-author questions "
                                    "with perturbed answers.")
    world_facts_split: str = Field("world_facts", description="World-fact questions with "
                                   "perturbed answers.")
    max_new_tokens: int = Field(200, ge=1, description="Longest greedy answer generated for "
                                "ROUGE (shared with the rouge metric at the same value).")


class ModelUtility(Metric):
    """Model utility (TOFU, Maini et al. 2024): the harmonic mean of nine numbers.

    On each of the retain, real-authors and world-facts sets: the answer probability
    (``exp`` of the mean answer-token log-prob; on real authors and world facts normalised
    over the answer and its perturbed answers, ``p(a) / (p(a) + sum_j p(a'_j))``), the
    ROUGE-L recall of the greedy answer, and the truth-ratio score ``mean(max(0, 1 - TR))``
    (correct answer: the paraphrase on retain, the answer elsewhere). The nine numbers are
    in the details. Log-probs come from the cached one-pass token statistics, answers from
    the shared greedy generations.
    """

    name = "model_utility"
    modalities = ("text",)
    needs = frozenset()
    Params = ModelUtilityParams
    paper = TOFU
    outputs = ("model_utility",)
    #: Generates text greedily, which needs a causal LM (the check is in _generation).
    adapters = ("causal_lm", "seq2seq_lm")  # greedy answers: both decode
    scope = "model"

    def compute(self, ctx: Any) -> Measurement:
        from erasus_llm.metrics._cache import split_items, token_stats
        from erasus_llm.metrics._generation import greedy_answers
        from erasus_llm.metrics.probability import answer_probability, normalised_probability
        from erasus_llm.metrics.rouge import rouge_l
        from erasus_llm.metrics.truth_ratio import true_better, truth_ratio_values

        p: ModelUtilityParams = self.params  # type: ignore[assignment]
        parts: dict[str, float] = {}
        for label, split, correct in (("retain", p.retain_split, "paraphrased_answer"),
                                      ("real_authors", p.real_authors_split, "answer"),
                                      ("world_facts", p.world_facts_split, "answer")):
            answer = token_stats(ctx, split, "answer", metric=self.name)
            if label == "retain":
                prob = answer_probability(answer.mean_logp())
            else:
                wrong = token_stats(ctx, split, "perturbed_answer", metric=self.name)
                prob = normalised_probability(answer.mean_logp(),
                                              wrong.per_example(wrong.mean_logp()))
            refs = [it["answer"] for it in split_items(ctx, split, self.name)]
            recall, _ = rouge_l(refs, greedy_answers(ctx, split, p.max_new_tokens, self.name))
            tr = truth_ratio_values(ctx, split, correct, self.name)
            parts[f"{label}_answer_prob"] = float(prob.mean())
            parts[f"{label}_rouge_l_recall"] = sum(recall) / len(recall)
            parts[f"{label}_truth_ratio_true_better"] = true_better(tr)
        return Measurement(values={"model_utility": harmonic_mean(list(parts.values()))},
                           details={"components": parts})
