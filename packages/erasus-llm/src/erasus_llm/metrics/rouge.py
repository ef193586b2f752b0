"""ROUGE-L of greedy answers against the reference answers (TOFU recall, MUSE F1)."""

from __future__ import annotations

from typing import Any

from erasus.components import Paper
from erasus.errors import MissingDependencyError
from erasus.evaluation import Measurement
from pydantic import Field

from erasus_llm.metrics._base import SplitMetric, SplitMetricParams

__all__ = ["Rouge", "RougeParams", "rouge_l"]


def rouge_l(references: list[str], predictions: list[str], *, stemmer: bool = True
            ) -> tuple[list[float], list[float]]:
    """Per pair, ROUGE-L recall and F1 of ``prediction`` against ``reference`` with the
    ``rouge-score`` package; with ``stemmer`` (Porter stemming) as TOFU and
    open-unlearning score, without as MUSE's evaluation does."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise MissingDependencyError(
            "the ROUGE metrics need the 'rouge-score' package: pip install \"erasus[llm]\" "
            "(or pip install rouge-score)") from None
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stemmer)
    recall, f1 = [], []
    for ref, pred in zip(references, predictions, strict=True):
        score = scorer.score(ref, pred)["rougeL"]
        recall.append(float(score.recall))
        f1.append(float(score.fmeasure))
    return recall, f1


class RougeParams(SplitMetricParams):
    """Parameters of ROUGE."""

    field: str = Field("answer", description="Item field holding the reference answer.")
    max_new_tokens: int = Field(200, ge=1, description="Longest greedy answer generated "
                                "(TOFU's 200; also capped by the model's positions).")


class Rouge(SplitMetric):
    """ROUGE-L recall (TOFU, Maini et al. 2024) and F1 (MUSE) of the model's greedy answers.

    For each question of each split the model answers by greedy decoding from the adapter's
    prompt (batched, generated once per model and split and shared with
    ``model_utility``); the answer is scored against the item's ``field`` with the
    ``rouge-score`` package (ROUGE-L with stemming). Values ``<split>_rouge_l_recall`` and
    ``<split>_rouge_l_f1`` are means over questions; the generations and per-question
    scores are in the details.
    """

    name = "rouge"
    Params = RougeParams
    paper = Paper(title="ROUGE: A Package for Automatic Evaluation of Summaries",
                  authors="Chin-Yew Lin", year=2004,
                  url="https://aclanthology.org/W04-1013/", venue="ACL Workshop")
    suffixes = ("rouge_l_recall", "rouge_l_f1")
    outputs = ("forget_rouge_l_recall", "forget_rouge_l_f1")
    #: Generates text greedily, which needs a causal LM (the check is in _generation).
    adapters = ("causal_lm", "seq2seq_lm")  # greedy answers: both decode

    def compute(self, ctx: Any) -> Measurement:
        from erasus_llm.metrics._cache import split_items
        from erasus_llm.metrics._generation import greedy_answers

        p: RougeParams = self.params  # type: ignore[assignment]
        values, details = {}, {}
        for split in p.splits:
            refs = [str(it.get(p.field, "")) for it in split_items(ctx, split, self.name)]
            gens = greedy_answers(ctx, split, p.max_new_tokens, self.name)
            recall, f1 = rouge_l(refs, gens)
            values[f"{split}_rouge_l_recall"] = sum(recall) / len(recall)
            values[f"{split}_rouge_l_f1"] = sum(f1) / len(f1)
            details[split] = {"generations": gens, "rouge_l_recall": recall,
                              "rouge_l_f1": f1}
        return Measurement(values=values, details=details)
