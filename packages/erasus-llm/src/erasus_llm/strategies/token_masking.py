"""Token masking: unlearn only the informative answer tokens (Selective Unlearning)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.strategy import LoopParams, LossStrategy
from pydantic import Field

from erasus_llm.strategies._common import qa_batch, qa_records, require_causal_lm

if TYPE_CHECKING:
    import torch
    from erasus.adapters import ModelAdapter
    from erasus.strategy import RunContext, UnlearnData

__all__ = ["TokenMasking", "TokenMaskingParams", "context_gain", "select_tokens"]


class TokenMaskingParams(LoopParams):
    """Parameters of token masking (defaults suit the tiny causal LM)."""

    epochs: int = Field(20, ge=0, description="Passes over the forget set.")
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    batch_size: int = Field(8, ge=1, description="Examples per batch of each set.")
    fraction: float = Field(
        0.5, gt=0, le=1, description="Share of each forget answer's tokens (EOS included) "
        "that is unlearned: the ceil(fraction * length) tokens of highest context gain, at "
        "least one; the others get no forget loss.")
    forget_loss: Literal["npo", "ga"] = Field(
        "npo", description="Loss on the selected tokens: 'npo' (NPO on their summed "
        "log-likelihood, against the original model's) or 'ga' (gradient ascent on their "
        "mean NLL).")
    beta: float = Field(1.0, gt=0, description="NPO's inverse temperature (forget_loss: npo).")
    retain_weight: float = Field(
        3.0, ge=0, description="Weight of the retain set's mean answer NLL; 0: forget term "
        "only, no retain set needed.")


def context_gain(full_nll: torch.Tensor, masked_nll: torch.Tensor) -> torch.Tensor:
    """Per answer token: ``log p(y_t | q, y_<t) - log p(y_t | no question, y_<t)``, i.e.
    ``masked_nll - full_nll``; how much the question makes the token likelier."""
    return masked_nll - full_nll


def select_tokens(gain: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean mask of the ``max(1, ceil(fraction * n))`` tokens of highest ``gain``
    (a 1-D tensor of one answer's ``n`` tokens); ties go to the earlier token."""
    import torch

    n = int(gain.numel())
    k = min(n, max(1, math.ceil(fraction * n - 1e-9)))
    order = torch.sort(-gain.float(), stable=True).indices
    mask = torch.zeros(n, dtype=torch.bool)
    mask[order[:k]] = True
    return mask


class TokenMasking(LossStrategy):
    """Token masking (after Wan et al. 2025, Selective Unlearning): forget only the answer
    tokens that carry the fact.

    Wan et al. argue that "not every token needs forgetting": unlearning every token of a
    forget document also unlearns common tokens that carry general knowledge, so their
    Selective Unlearning (SU) picks a critical subset of the forget tokens and applies a
    base unlearning loss (GA, NPO...) to that subset only. The paper's own procedure for
    picking the subset could not be checked against its text when this was written, so
    the SELECTION CRITERION HERE IS THIS PACKAGE'S, stated exactly:

    * Context gain. Once, in ``prepare`` and under the original weights, every forget
      answer is scored twice: with its question, and with the question left empty (the
      same prompt template around ``""``). A token's gain is
      ``log p(y_t | q, y_<t) - log p(y_t | "", y_<t)``: tokens predictable without the
      question (function words, the EOS after an answer) gain little; the tokens that
      only the question's subject makes likely (the fact) gain most.
    * Per answer, the ``max(1, ceil(fraction * n))`` tokens of highest gain (``n`` answer
      tokens, EOS included) are selected; the others are masked out of the forget loss.

    Each step minimises, over a forget batch, with ``S`` the selected tokens,
    ``forget_loss: npo``: ``(2 / beta) * mean log(1 + (p_theta(y_S|x) / p_ref(y_S|x))^beta)``
    with ``log p(y_S|x) = sum_{t in S} log p(y_t | x, y_<t)`` and ``p_ref`` the original
    model's, stored per forget example in ``prepare`` (no reference model is kept); or
    ``forget_loss: ga``: minus the mean NLL of the selected tokens (per example, then
    averaged); plus ``retain_weight`` times the retain batch's mean answer NLL. The
    selection is fixed for the run (``selected``, ``gains``). ``forget_loss`` logs the
    forget batch's mean answer NLL over ALL answer tokens, ``selected_nll`` that of the
    selected ones.

    Needs the ``causal_lm`` adapter and ``{"question", "answer"}`` items.
    """

    name = "token_masking"
    modalities = ("text",)
    adapters = ("causal_lm",)
    needs = frozenset()
    Params = TokenMaskingParams
    paper = Paper(
        title="Not Every Token Needs Forgetting: Selective Unlearning to Limit Change in "
        "Utility in Large Language Model Unlearning",
        authors="Yixin Wan, Anil Ramakrishna, Kai-Wei Chang, Volkan Cevher, Rahul Gupta",
        year=2025,
        url="https://arxiv.org/abs/2506.00876",
        venue="Findings of EMNLP",
    )
    effect = "raise_forget_loss"
    epoch_over = "forget"
    pair_with = "retain"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: TokenMaskingParams = self.params  # type: ignore[assignment]
        self.pair_with = "retain" if p.retain_weight > 0 else None
        #: Per forget example: the context gain of each answer token (set by prepare()).
        self.gains: list[torch.Tensor] = []
        #: Per forget example: which answer tokens are unlearned (set by prepare()).
        self.selected: list[torch.Tensor] = []
        #: Per forget example: the original ``log p(y_S|x)`` of the selected tokens.
        self.ref_log_prob: torch.Tensor | None = None

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        import torch

        p: TokenMaskingParams = self.params  # type: ignore[assignment]
        lm = require_causal_lm(adapter, self.name, "scores each answer token with and "
                               "without its question")
        if self.pair_with and (data.retain is None or len(data.retain) == 0):
            raise IncompatibleComponentError(
                f"strategy '{self.name}' with retain_weight {p.retain_weight:g} needs a "
                "non-empty retain set; pass one, or set retain_weight: 0")
        records = qa_records(data.forget, self.name, "scores each answer with its "
                             "question removed")
        blank = [{"question": "", "answer": r["answer"]} for r in records]
        model = lm.model
        was_training = model.training
        model.eval()
        self.gains, self.selected = [], []
        ref = torch.zeros(len(records), dtype=torch.float32)
        try:
            with torch.no_grad():
                for start in range(0, len(records), p.batch_size):
                    idx = list(range(start, min(start + p.batch_size, len(records))))
                    full, mask = lm.token_losses(qa_batch(lm, records, idx))
                    masked, mask0 = lm.token_losses(qa_batch(lm, blank, idx))
                    for row, i in enumerate(idx):
                        f = full[row][mask[row]].float().cpu()
                        m = masked[row][mask0[row]].float().cpu()
                        if f.numel() != m.numel():
                            raise IncompatibleComponentError(
                                f"strategy '{self.name}': the answer of forget item {i} "
                                "tokenises differently after an empty question (the "
                                "answer was truncated?); shorten it or raise max_length")
                        gain = context_gain(f, m)
                        sel = select_tokens(gain, p.fraction)
                        self.gains.append(gain)
                        self.selected.append(sel)
                        ref[i] = -f[sel].sum()
        finally:
            model.train(was_training)
        self.ref_log_prob = ref

    def _selection(self, forget: dict[str, Any], mask: torch.Tensor) -> torch.Tensor:
        """The ``[batch, T]`` mask of the selected answer tokens of a forget batch."""
        import torch

        if self.ref_log_prob is None:
            raise RuntimeError(f"{self.name}: prepare() must run before loss()")
        if "index" not in forget:
            raise IncompatibleComponentError(
                f"strategy '{self.name}' looks its token selection up by forget-set "
                "position, so a forget batch needs 'index' (the training loop adds it)")
        out = torch.zeros_like(mask, dtype=torch.bool)
        for row, i in enumerate(forget["index"].tolist()):
            pos = mask[row].nonzero().flatten()
            sel = self.selected[i]
            if pos.numel() != sel.numel():
                raise IncompatibleComponentError(
                    f"strategy '{self.name}': forget item {i} has {pos.numel()} answer "
                    f"tokens in this batch but {sel.numel()} when prepare() scored it; "
                    "the forget set changed after prepare()")
            out[row, pos[sel.to(pos.device)]] = True
        return out

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        from erasus.builtin.strategies.npo import npo_loss

        p: TokenMaskingParams = self.params  # type: ignore[assignment]
        assert forget is not None
        nll, mask = adapter.token_losses(forget)
        mask = mask.bool()
        sel = self._selection(forget, mask).to(nll.dtype)
        all_mean = ((nll * mask.to(nll.dtype)).sum(1) / mask.sum(1)).mean()
        sel_sum = (nll * sel).sum(1)
        sel_mean = (sel_sum / sel.sum(1)).mean()
        if p.forget_loss == "npo":
            assert self.ref_log_prob is not None
            ref = self.ref_log_prob.to(nll.device)[forget["index"]]
            forget_term = npo_loss(-sel_sum.float(), ref, p.beta)
        else:
            forget_term = -sel_mean
        total = forget_term
        parts = {f"{p.forget_loss}_loss": forget_term, "forget_loss": all_mean.detach(),
                 "selected_nll": sel_mean.detach()}
        if self.pair_with is not None:
            retain_loss = adapter.per_example_loss(retain).mean()  # type: ignore[arg-type]
            total = total + p.retain_weight * retain_loss
            parts["retain_loss"] = retain_loss
        return {"loss": total, **parts}
