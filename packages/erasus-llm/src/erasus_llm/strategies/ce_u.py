"""CE-U (Cross Entropy Unlearning): cross-entropy toward the model's own distribution without the
true token."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.strategy import LoopParams, LossStrategy
from pydantic import Field

from erasus_llm.strategies._common import answer_positions, require_causal_lm

if TYPE_CHECKING:
    import torch
    from erasus.adapters import ModelAdapter
    from erasus.strategy import RunContext, UnlearnData

__all__ = ["CEU", "CEUParams", "ce_u_token_loss"]


class CEUParams(LoopParams):
    """Parameters of CE-U (defaults suit the tiny causal LM)."""

    epochs: int = Field(5, ge=0, description="Passes over the forget set.")
    lr: float = Field(3e-4, gt=0, description="Learning rate (the paper: 1e-5 on Llama-2-7B).")
    batch_size: int = Field(8, ge=1, description="Forget examples per batch.")
    ignore_first: int = Field(
        0, ge=0, description="Answer tokens at the start of each answer left out of the loss "
        "(the paper's TOFU runs leave out 1, the answer's first token; 0 here because the "
        "tiny problem's answers are one word).")


def ce_u_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CE-U per row: ``-sum_v t_v log softmax(logits)_v`` with ``t = softmax(sg(logits))``
    after the true token's logit (``labels``) is set to ``-inf``; ``[n, V]``, ``[n]`` -> ``[n]``.

    ``sg`` stops the gradient: the target is the model's current distribution over every
    other token, renormalised.
    """
    import torch

    target_logits = logits.detach().float().clone()
    target_logits.scatter_(1, labels.view(-1, 1), float("-inf"))
    target = torch.softmax(target_logits, dim=-1)
    log_q = torch.log_softmax(logits.float(), dim=-1)
    return -(target * log_q).sum(dim=-1)


class CEU(LossStrategy):
    """CE-U (Yang 2025): cross-entropy toward the model's own prediction minus the true token.

    At every answer token ``y_t`` of a forget example, the target distribution is the
    model's CURRENT prediction with ``y_t``'s logit set to ``-inf`` (renormalised, no
    gradient through it), and the loss is the cross-entropy from it to the prediction.
    Its gradient with respect to the logits is ``q - t``: it removes ``y_t``'s probability
    ``q(y_t)`` and hands it to the other tokens in proportion, so it is bounded where
    gradient ascent's ``1 / q(y_t)`` explodes, and it needs no reference model or retain
    set. The loss is averaged over each example's answer tokens (question masked, EOS
    included, the first ``ignore_first`` answer tokens left out) and then over the batch.
    ``forget_loss`` logs the batch's mean answer NLL.
    """

    name = "ce_u"
    modalities = ("text",)
    adapters = ("causal_lm",)
    needs = frozenset()
    Params = CEUParams
    paper = Paper(
        title="CE-U: Cross Entropy Unlearning",
        authors="Bo Yang",
        year=2025,
        url="https://arxiv.org/abs/2503.01224",
    )
    effect = "raise_forget_loss"
    epoch_over = "forget"
    pair_with = None

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        require_causal_lm(adapter, self.name, "needs the next-token logits at each answer "
                          "token")

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        import torch

        p: CEUParams = self.params  # type: ignore[assignment]
        assert forget is not None
        lm: Any = adapter
        logits = lm._forward(forget).logits
        labels_all = forget["labels"]
        answer = answer_positions(labels_all)
        # the first `ignore_first` answer positions of each row leave the CE-U term
        counted = answer & (answer.long().cumsum(dim=1) > p.ignore_first)
        per_example, nll = [], []
        for row in range(logits.shape[0]):
            labels = labels_all[row][1:][answer[row][:-1]]
            row_logits = logits[row][answer[row]]
            log_q = torch.log_softmax(row_logits.float(), dim=-1)
            nll.append(-log_q.gather(1, labels.view(-1, 1)).mean())
            keep = counted[row][answer[row]]
            if bool(keep.any()):
                per_example.append(ce_u_token_loss(row_logits[keep], labels[keep]).mean())
        if not per_example:
            raise IncompatibleComponentError(
                f"strategy '{self.name}': no answer token of this forget batch is left after "
                f"ignore_first {p.ignore_first}; lower ignore_first")
        loss = torch.stack(per_example).mean()
        return {"loss": loss, "ce_u_loss": loss, "forget_loss": torch.stack(nll).mean().detach()}
