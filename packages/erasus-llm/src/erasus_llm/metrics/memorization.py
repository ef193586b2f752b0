"""Exact memorisation and extraction strength: how much of an answer greedy decoding recovers."""

from __future__ import annotations

from typing import Any

from erasus.components import Paper
from erasus.evaluation import Measurement
from pydantic import Field

from erasus_llm.metrics._base import SplitMetric, SplitMetricParams, check_adapter

__all__ = ["ExactMemorization", "ExtractionStrength", "MemorizationParams",
           "exact_memorization", "extraction_strength"]


def exact_memorization(hits: Any) -> float:
    """The fraction of answer tokens the model's argmax predicts, given the true prefix."""
    import numpy as np

    return float(np.mean(np.asarray(hits, dtype=bool)))


def extraction_strength(hits: Any) -> float:
    """``1 - k / |y|`` with ``k`` the shortest answer prefix after which greedy decoding
    reproduces the rest of the answer exactly (``k = |y|``, a score of 0, when even the last
    token is missed).

    With teacher forcing, "greedy decoding from ``y_<k`` reproduces ``y_>=k``" is "every
    argmax prediction from position ``k`` on is right", so ``k`` is one past the last miss.
    (open-unlearning's loop leaves ``k = |y| - 1``, a score of ``1/|y|``, when nothing
    matches; here that case scores 0 as the definition says.)
    """
    import numpy as np

    hits = np.asarray(hits, dtype=bool)
    misses = np.flatnonzero(~hits)
    k = int(misses[-1]) + 1 if len(misses) else 0
    return 1.0 - k / len(hits)


class MemorizationParams(SplitMetricParams):
    """Parameters of the memorisation metrics."""

    field: str = Field("answer", description="Item field holding the answer.")


class _Memorization(SplitMetric):
    Params = MemorizationParams

    @staticmethod
    def score(hits: Any) -> float:
        raise NotImplementedError

    def compute(self, ctx: Any) -> Measurement:
        from erasus_llm.metrics._cache import token_stats

        p: MemorizationParams = self.params  # type: ignore[assignment]
        check_adapter(self, ctx.adapter, "reads greedy decoding from each answer prefix")
        values, details = {}, {}
        for split, out in zip(p.splits, self.outputs, strict=True):
            stats = token_stats(ctx, split, p.field, metric=self.name)
            per = [self.score(h) for h in stats.hit]
            values[out] = float(sum(per) / len(per))
            details[split] = {"per_question": per}
        return Measurement(values=values, details=details)


class ExactMemorization(_Memorization):
    """Exact memorisation (Tirumala et al. 2022, as in open-unlearning): per answer, the
    fraction of its tokens (EOS included) that are the model's argmax prediction given the
    question and the true answer prefix; the mean over questions. One cached pass."""

    name = "exact_memorization"
    paper = Paper(title="Memorization Without Overfitting: Analyzing the Training Dynamics "
                  "of Large Language Models", authors="Kushal Tirumala, Aram H. Markosyan, "
                  "Luke Zettlemoyer, Armen Aghajanyan", year=2022,
                  url="https://arxiv.org/abs/2205.10770", venue="NeurIPS")
    suffixes = ("exact_memorization",)
    outputs = ("forget_exact_memorization",)
    score = staticmethod(exact_memorization)


class ExtractionStrength(_Memorization):
    """Extraction strength (Wang et al. 2025, as in open-unlearning): per answer
    ``1 - k/|y|`` for the shortest prefix length ``k`` from which greedy decoding recovers
    the rest of the answer; the mean over questions. Read from the argmax predictions of
    the one cached pass (see :func:`extraction_strength`)."""

    name = "extraction_strength"
    paper = Paper(title="Towards Effective Evaluations and Comparisons for LLM Unlearning "
                  "Methods", authors="Qizhou Wang, Bo Han, Puning Yang, Jianing Zhu, "
                  "Tongliang Liu, Masashi Sugiyama", year=2025,
                  url="https://arxiv.org/abs/2406.09179", venue="ICLR")
    suffixes = ("extraction_strength",)
    outputs = ("forget_extraction_strength",)
    #: Its prefixes are a causal LM's: a masked LM predicts the answer from the question alone.
    adapters = ("causal_lm",)
    score = staticmethod(extraction_strength)
