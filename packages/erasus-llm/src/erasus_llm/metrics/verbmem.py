"""MUSE verbatim memorisation: ROUGE-L F1 of the continuation of forget-text prompts."""

from __future__ import annotations

from typing import Any

from erasus.evaluation import Measurement, Metric, MetricParams
from pydantic import Field

from erasus_llm.metrics.privleak import PrivLeak

__all__ = ["VerbMem", "VerbMemParams"]


class VerbMemParams(MetricParams):
    """Parameters of verbatim memorisation."""

    split: str = Field("verbmem_forget", description="Split of {prompt, gt} items: the start "
                       "of a forget text and its true continuation (MUSE's verbmem/forget).")
    prompt_field: str = Field("prompt", description="Item field holding the prompt text.")
    target_field: str = Field("gt", description="Item field holding the true continuation.")
    max_new_tokens: int = Field(128, ge=1, description="Longest continuation generated "
                                "(MUSE's 128; also capped by the model's positions).")


class VerbMem(Metric):
    """Verbatim memorisation (MUSE, Shi et al. 2025): the mean ROUGE-L F1 between the
    model's greedy continuation of each prompt (a forget-text prefix, tokenised as plain
    text, no QA template) and the text that truly follows it, with the ``rouge-score``
    package without stemming, as MUSE's evaluation scores it. High means the forget text
    can still be regurgitated. Continuations are generated in batches once per (model,
    split) and are in the details with the per-prompt scores."""

    name = "verbmem"
    modalities = ("text",)
    needs = frozenset()
    Params = VerbMemParams
    paper = PrivLeak.paper
    outputs = ("verbmem_rouge_l_f1",)
    #: Generates text greedily, which needs a causal LM (the check is in _generation).
    adapters = ("causal_lm",)
    scope = "model"

    def compute(self, ctx: Any) -> Measurement:
        from erasus_llm.metrics._cache import split_items
        from erasus_llm.metrics._generation import greedy_continuations
        from erasus_llm.metrics.rouge import rouge_l

        p: VerbMemParams = self.params  # type: ignore[assignment]
        refs = [str(it.get(p.target_field, "")) for it in split_items(ctx, p.split, self.name)]
        gens = greedy_continuations(ctx, p.split, p.prompt_field, p.max_new_tokens, self.name)
        _, f1 = rouge_l(refs, gens, stemmer=False)  # MUSE's scorer does not stem
        return Measurement(values={"verbmem_rouge_l_f1": sum(f1) / len(f1)},
                           details={"generations": gens, "rouge_l_f1": f1})
