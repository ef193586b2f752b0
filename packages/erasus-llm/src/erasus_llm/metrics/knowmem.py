"""MUSE knowledge memorisation: ROUGE-L of few-shot answers to questions on the texts."""

from __future__ import annotations

from typing import Any, Literal

from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement
from pydantic import Field

from erasus_llm.metrics._base import SplitMetric, SplitMetricParams
from erasus_llm.metrics.privleak import PrivLeak

__all__ = ["KnowMem", "KnowMemParams", "knowmem_prompt", "muse_answer"]

#: Where MUSE cuts a generated answer (the model going on to a next question).
STOPS = ("\n\n", "\nQuestion", "Question:")


def knowmem_prompt(question: str, shots: list[dict[str, Any]]) -> str:
    """MUSE's knowmem prompt: ``"Question: q\\nAnswer: a\\n\\n"`` per few-shot example,
    then ``"Question: <question>\\nAnswer: "``."""
    head = "".join(f"Question: {s['question']}\nAnswer: {s['answer']}\n\n" for s in shots)
    return head + f"Question: {question}\nAnswer: "


def muse_answer(generated: str) -> str:
    """The generated text up to the first of MUSE's stop strings."""
    for stop in STOPS:
        generated = generated.split(stop)[0]
    return generated


class KnowMemParams(SplitMetricParams):
    """Parameters of knowledge memorisation."""

    splits: list[str] = Field(
        default_factory=lambda: ["knowmem_forget_qa", "knowmem_retain_qa"], min_length=1,
        description="Splits of {question, answer} items (MUSE's knowmem forget_qa and "
        "retain_qa).")
    shots: Literal["icl", "none"] = Field(
        "icl", description="Few-shot examples before each question: 'icl', the items of the "
        "split '<split>_icl' (MUSE's forget_qa_icl / retain_qa_icl files; an error when the "
        "data set has none); 'none': zero-shot.")
    max_new_tokens: int = Field(32, ge=1, description="Longest answer generated (MUSE's 32).")


class KnowMem(SplitMetric):
    """Knowledge memorisation (MUSE, Shi et al. 2025): each question is asked after the
    split's few-shot examples (:func:`knowmem_prompt`, tokenised as plain text with the
    tokenizer's special tokens), the greedy answer is cut at MUSE's stop strings and
    scored against the true answer with ROUGE-L from ``rouge-score`` without stemming, as
    MUSE's evaluation does: ``<split>_rouge_l_f1`` (MUSE's headline ``rougeL``) and
    ``<split>_rouge_l_recall``. On the forget questions the goal after unlearning is the
    oracle's level; on the retain questions, unchanged. Answers and per-question scores
    are in the details."""

    name = "knowmem"
    Params = KnowMemParams
    paper = PrivLeak.paper
    suffixes = ("rouge_l_f1", "rouge_l_recall")
    outputs = ("knowmem_forget_qa_rouge_l_f1", "knowmem_forget_qa_rouge_l_recall",
               "knowmem_retain_qa_rouge_l_f1", "knowmem_retain_qa_rouge_l_recall")
    #: Continues a plain-text prompt greedily, which needs a causal LM.
    adapters = ("causal_lm",)

    def compute(self, ctx: Any) -> Measurement:
        from erasus_llm.metrics._cache import split_items
        from erasus_llm.metrics._generation import greedy_continuations
        from erasus_llm.metrics.rouge import rouge_l

        p: KnowMemParams = self.params  # type: ignore[assignment]
        values, details = {}, {}
        for split in p.splits:
            items = split_items(ctx, split, self.name)
            shots: list[dict[str, Any]] = []
            if p.shots == "icl":
                names = ctx.splits.names() if hasattr(ctx.splits, "names") else ()
                if f"{split}_icl" not in names:
                    raise IncompatibleComponentError(
                        f"metric 'knowmem' asks each question after the few-shot examples of "
                        f"the split '{split}_icl', which this data set does not have; give "
                        "the data set MUSE's *_icl files, or set shots: none (zero-shot)")
                shots = split_items(ctx, f"{split}_icl", self.name)
            prompts = [{"prompt": knowmem_prompt(str(it["question"]), shots)} for it in items]
            gens = [muse_answer(g) for g in greedy_continuations(
                ctx, ("knowmem", split, p.shots), "prompt", p.max_new_tokens, self.name,
                items=prompts)]
            recall, f1 = rouge_l([str(it["answer"]) for it in items], gens, stemmer=False)
            values[f"{split}_rouge_l_f1"] = sum(f1) / len(f1)
            values[f"{split}_rouge_l_recall"] = sum(recall) / len(recall)
            details[split] = {"answers": gens, "rouge_l_f1": f1, "rouge_l_recall": recall}
        return Measurement(values=values, details=details)
