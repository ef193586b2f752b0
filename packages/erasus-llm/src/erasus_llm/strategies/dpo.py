"""DPO for unlearning: prefer a refusal ("I don't know") over the forget answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from erasus.components import Paper
from erasus.strategy import LoopParams, LossStrategy
from pydantic import Field

from erasus_llm.strategies._common import (
    load_refusals,
    qa_batch,
    qa_records,
    require_causal_lm,
    sequence_log_probs,
)

if TYPE_CHECKING:
    import torch
    from erasus.adapters import ModelAdapter
    from erasus.strategy import RunContext, UnlearnData

__all__ = ["DPO", "DPOParams", "dpo_loss", "refusal_choices"]

DPO_PAPER = Paper(
    title="Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
    authors="Rafael Rafailov, Archit Sharma, Eric Mitchell, Stefano Ermon, "
    "Christopher D. Manning, Chelsea Finn",
    year=2023,
    url="https://arxiv.org/abs/2305.18290",
    venue="NeurIPS",
)


class DPOParams(LoopParams):
    """Parameters of DPO unlearning (defaults suit the tiny causal LM)."""

    epochs: int = Field(5, ge=0, description="Passes over the forget set.")
    lr: float = Field(1e-3, gt=0, description="Learning rate (TOFU uses 1e-5 on 7B models).")
    batch_size: int = Field(8, ge=1, description="Forget examples per batch.")
    beta: float = Field(
        0.1, gt=0, description="Inverse temperature of the preference loss (TOFU and "
        "open-unlearning use 0.1).")
    idk_path: str | None = Field(
        None, description="A text file of refusal answers, one per line, to prefer over the "
        "forget answers; unset: the refusals shipped with erasus-llm (data/idk_answers.txt).")


def dpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """``-mean(log sigmoid(beta * ((chosen - ref_chosen) - (rejected - ref_rejected))))``.

    All four are per-example sequence log-likelihoods ``log p(y|x)`` (sums over the answer
    tokens), of the model being trained and of the reference model.
    """
    import torch.nn.functional as F

    margin = (chosen - ref_chosen) - (rejected - ref_rejected)
    return -F.logsigmoid(beta * margin).mean()


def refusal_choices(n: int, refusals: list[str], seed: int) -> list[str]:
    """One refusal per forget example, drawn uniformly with a generator seeded by ``seed``
    (the same example gets the same refusal in every run with that seed)."""
    import torch

    g = torch.Generator().manual_seed(int(seed))
    return [refusals[i] for i in torch.randint(len(refusals), (n,), generator=g).tolist()]


class DPO(LossStrategy):
    """DPO unlearning (Rafailov et al. 2023; TOFU, Maini et al. 2024): refuse instead of answer.

    Each forget question ``x`` gets a preferred answer ``y_w``, a refusal from the shipped
    "I don't know" list (or ``idk_path``) drawn per example with a generator seeded by the
    run seed, and a rejected answer ``y_l``, its forget answer. Each step minimises the
    DPO loss over a forget batch::

        L = -mean log sigmoid(beta * [(log p(y_w|x) - log p_ref(y_w|x))
                                      - (log p(y_l|x) - log p_ref(y_l|x))])

    with ``log p(y|x)`` the answer's summed token log-likelihood (EOS included, question
    masked), as TOFU's DPO baseline computes it. open-unlearning scales the same quantity by
    ``2 / beta``; under Adam that changes little on its own, but it weighs the forget term
    ``2 / beta`` times more against an added retain term (see ``idk_dpo``).

    The reference ``p_ref`` is the model as unlearning starts: ``prepare`` runs it once
    over the forget questions with their refusals and with their answers (eval mode, no
    gradient) and keeps the two log-likelihoods per example, so no reference model is
    kept in memory (open-unlearning keeps a full second copy). ``forget_loss`` logs the
    forget batch's mean answer NLL; ``idk_loss`` the refusals' mean NLL.
    """

    name = "dpo"
    modalities = ("text",)
    adapters = ("causal_lm",)
    needs = frozenset()
    Params = DPOParams
    paper = DPO_PAPER
    effect = "raise_forget_loss"
    epoch_over = "forget"
    pair_with = None

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        #: The forget questions with their chosen refusals, by forget position.
        self.chosen: list[dict[str, str]] = []
        #: ``log p_ref`` of the refusal and of the forget answer, by forget position.
        self.ref_chosen: torch.Tensor | None = None
        self.ref_rejected: torch.Tensor | None = None

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        p: DPOParams = self.params  # type: ignore[assignment]
        lm = require_causal_lm(adapter, self.name, "pairs each forget question with a "
                               "refusal answer and scores both answers' tokens")
        forget = qa_records(data.forget, self.name, "pairs each forget question with a "
                            "refusal answer")
        refusals = refusal_choices(len(forget), load_refusals(p.idk_path), run.seed)
        self.chosen = [{"question": r["question"], "answer": a}
                       for r, a in zip(forget, refusals, strict=True)]
        self.ref_chosen = sequence_log_probs(lm, self.chosen, p.batch_size)
        self.ref_rejected = sequence_log_probs(lm, forget, p.batch_size)

    def preference_terms(self, adapter: ModelAdapter, forget: dict[str, Any]
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The DPO loss of a forget batch, and the values to log with it."""
        if self.ref_chosen is None or self.ref_rejected is None:
            raise RuntimeError(f"{self.name}: prepare() must run before loss()")
        p: DPOParams = self.params  # type: ignore[assignment]
        index = forget["index"]
        idx = index.tolist()
        lm: Any = adapter
        rej_losses, rej_mask = adapter.token_losses(forget)
        rej_mask = rej_mask.to(rej_losses.dtype)
        chosen_losses, chosen_mask = adapter.token_losses(qa_batch(lm, self.chosen, idx))
        chosen_mask = chosen_mask.to(chosen_losses.dtype)
        rejected = -(rej_losses * rej_mask).sum(dim=1)
        chosen = -(chosen_losses * chosen_mask).sum(dim=1)
        device = rejected.device
        loss = dpo_loss(chosen, rejected, self.ref_chosen.to(device)[idx],
                        self.ref_rejected.to(device)[idx], p.beta)
        return loss, {
            "dpo_loss": loss,
            "forget_loss": (-rejected / rej_mask.sum(dim=1)).mean(),
            "idk_loss": (-chosen / chosen_mask.sum(dim=1)).mean(),
        }

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        total, parts = self.preference_terms(adapter, forget)  # type: ignore[arg-type]
        return {"loss": total, **parts}
