"""Perplexity of the answers of a split."""

from __future__ import annotations

from typing import Any

from erasus.evaluation import Measurement
from pydantic import Field

from erasus_llm.metrics._base import SplitMetric, SplitMetricParams

__all__ = ["Perplexity", "PerplexityParams", "perplexity"]


def perplexity(logps: list[Any]) -> float:
    """Corpus perplexity ``exp(-sum of token log-probs / number of tokens)`` over answers."""
    import numpy as np

    total = sum(float(np.sum(lp)) for lp in logps)
    count = sum(len(lp) for lp in logps)
    return float(np.exp(-total / count))


class PerplexityParams(SplitMetricParams):
    """Parameters of perplexity."""

    splits: list[str] = Field(default_factory=lambda: ["forget", "retain"], min_length=1,
                              description="Splits whose answers are scored.")
    field: str = Field("answer", description="Item field holding the answer.")


class Perplexity(SplitMetric):
    """Perplexity of the answer tokens (question masked, EOS included) of each split:
    ``exp`` of the token-weighted mean NLL over the split; each answer's own perplexity is
    in the details. Read from the cached one-pass token statistics. Low on the forget set
    means it is still memorised; a rise on the retain set is collateral damage."""

    name = "perplexity"
    Params = PerplexityParams
    paper = None
    suffixes = ("perplexity",)
    outputs = ("forget_perplexity", "retain_perplexity")

    def compute(self, ctx: Any) -> Measurement:
        from erasus_llm.metrics._cache import token_stats

        p: PerplexityParams = self.params  # type: ignore[assignment]
        values, details = {}, {}
        for split, out in zip(p.splits, self.outputs, strict=True):
            stats = token_stats(ctx, split, p.field, metric=self.name)
            values[out] = perplexity(stats.logp)
            details[split] = {"per_question": [perplexity([lp]) for lp in stats.logp]}
        return Measurement(values=values, details=details)
