"""Embedding alignment: pull forget hidden states toward the mean refusal hidden state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from erasus.components import Paper
from pydantic import Field

from erasus_llm.strategies._common import answer_positions, load_refusals, qa_batch, qa_records
from erasus_llm.strategies.rmu import RMU, RMUParams

if TYPE_CHECKING:
    import torch
    from erasus.adapters import ModelAdapter
    from erasus.strategy import RunContext, UnlearnData

__all__ = ["EmbeddingAlignment", "EmbeddingAlignmentParams", "refusal_target"]


class EmbeddingAlignmentParams(RMUParams):
    """Parameters of embedding alignment (RMU's, with a refusal file instead of a norm)."""

    alpha: float = Field(5.0, ge=0, description="Weight of the retain activation loss "
                         "(lower than RMU's 30 on the tiny model: the refusal mean lies "
                         "closer to the answer states than a random vector of norm 20).")
    idk_path: str | None = Field(
        None, description="Text file of refusal answers, one a line (unset: the shipped "
        "one); their mean hidden state is the target.")


def refusal_target(strategy: RMU, adapter: ModelAdapter, questions: list[str],
                   refusals: list[str]) -> torch.Tensor:
    """Mean hidden state, at the strategy's layer and the answer positions, of every forget
    question paired with every refusal answer, under the current (original) weights."""
    import torch

    records = [{"question": q, "answer": a} for q in questions for a in refusals]
    total, count = None, 0.0
    with torch.no_grad():
        for start in range(0, len(records), 16):
            batch = qa_batch(adapter, records, list(range(start, min(start + 16,
                                                                     len(records)))))
            h = strategy.activations(adapter, batch).float()
            m = answer_positions(batch["labels"]).to(h.dtype).unsqueeze(-1)
            s = (h * m).sum(dim=(0, 1))
            total = s if total is None else total + s
            count += float(m.sum())
    assert total is not None
    return total / max(count, 1.0)


class EmbeddingAlignment(RMU):
    """Embedding alignment: RMU with a refusal target instead of a random one.

    No single established paper defines "embedding alignment" for LLM unlearning; this
    strategy is defined here, on the basis of RMU (Li et al. 2024, cited below), whose
    loss it keeps, and of Adaptive/representation-misdirection variants that replace RMU's
    random control vector by a meaningful direction. The target is the MEAN hidden state,
    at decoder layer ``layer`` and the answer positions, of the original model on every
    forget question paired with every shipped refusal answer ("I don't know", ...). Each
    step minimises::

        mean ||h_theta(x_f) - t_refusal||^2 + alpha * mean ||h_theta(x_r) - h_frozen(x_r)||^2

    so forget answers are represented like refusals while retain states stay anchored to
    the original model's (computed, as in RMU, by swapping the original values of the few
    updated weights in: no model copy). Needs the ``causal_lm`` adapter and QA items.
    """

    name = "embedding_alignment"
    Params = EmbeddingAlignmentParams
    paper = Paper(
        title="The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning "
        "(RMU; the refusal-mean target is this framework's variant)",
        authors="Nathaniel Li, Alexander Pan, Anjali Gopal, et al., Dan Hendrycks",
        year=2024,
        url="https://arxiv.org/abs/2403.03218",
        venue="ICML",
    )

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        p: EmbeddingAlignmentParams = self.params  # type: ignore[assignment]
        super().prepare(adapter, data, run)
        questions = [r["question"] for r in qa_records(
            data.forget, self.name, "pairs forget questions with refusal answers")]
        self.control = refusal_target(self, adapter, questions, load_refusals(p.idk_path))
