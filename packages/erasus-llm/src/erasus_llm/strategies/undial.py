"""UNDIAL: self-distillation toward the original's logits with the true token's logit lowered."""

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

__all__ = ["UNDIAL", "UNDIALParams", "adjusted_targets", "soft_cross_entropy"]


class UNDIALParams(LoopParams):
    """Parameters of UNDIAL (defaults suit the tiny causal LM)."""

    epochs: int = Field(5, ge=0, description="Passes over the forget set.")
    lr: float = Field(1e-3, gt=0, description="Learning rate (the paper: 1e-5 to 1e-4).")
    batch_size: int = Field(8, ge=1, description="Examples per batch of each set.")
    beta: float = Field(
        10.0, ge=0, description="How much the true next token's logit is lowered in the "
        "teacher's logits (the paper's adjustment strength; 0: plain self-distillation, no "
        "unlearning).")
    retain_weight: float = Field(
        0.0, ge=0, description="Weight of the retain set's mean answer NLL (0: the paper's "
        "method, forget data only; open-unlearning's UNDIAL adds it with weight 1).")
    top_k: int | None = Field(
        None, ge=1, description="Keep only the teacher's top-k log-probs (and the true "
        "token's) per answer token; the target is then renormalised over those tokens. "
        "Unset: keep the full distribution (exact).")
    max_cache_mb: float = Field(
        4096.0, gt=0, description="Refuse to cache more than this many MB of teacher "
        "log-probs (set top_k, or raise this, for large vocabularies or forget sets).")


def adjusted_targets(teacher_log_probs: torch.Tensor, labels: torch.Tensor, beta: float
                     ) -> torch.Tensor:
    """``softmax(z - beta * onehot(y))``: the teacher distribution (log-probs or logits ``z``,
    ``[n, V]``) with each row's true token ``labels`` (``[n]``) lowered by ``beta``."""
    import torch

    z = teacher_log_probs.float().clone()
    z.scatter_add_(1, labels.view(-1, 1), torch.full_like(labels.view(-1, 1), -float(beta),
                                                           dtype=z.dtype))
    return torch.softmax(z, dim=-1)


def soft_cross_entropy(student_log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``-sum_v target_v * log q_v`` per row (``KL(target || q)`` plus the target's entropy,
    a constant: both have the same gradient)."""
    return -(target * student_log_probs).sum(dim=-1)


class UNDIAL(LossStrategy):
    """UNDIAL (Dong et al. 2024): distil from the original with the true token's logit lowered.

    For every answer token ``y_t`` of a forget example, the target is the ORIGINAL model's
    next-token distribution with ``y_t``'s logit reduced by ``beta``:
    ``p*_t = softmax(z_t - beta * onehot(y_t))``. The model is trained by minimising the
    cross-entropy ``-sum_v p*_t(v) log q_t(v)`` (equal, up to a constant, to
    ``KL(p*_t || q_t)``), averaged over each example's answer tokens and then over the
    batch (question masked, EOS included, like the ``causal_lm`` loss). Only the fact's
    own tokens lose probability; the rest of the distribution keeps the original's shape,
    which is what makes the method stable where gradient ascent collapses. With
    ``retain_weight > 0`` the retain set's mean answer NLL is added (open-unlearning's
    variant); the paper trains on forget data alone.

    Teacher memory: no copy of the original model is kept. ``prepare`` runs the model once
    over the forget set (eval mode, no gradient) and keeps, per answer token, the
    original's log-probs: the full vocabulary (``forget answer tokens x vocab`` float32,
    answer positions only: about 4 GB for 400 TOFU answers of 50 tokens at a 50k
    vocabulary) or, with ``top_k``, its k most likely tokens and the true token
    (``(k + 1) x 8`` bytes per token: about 10 MB there with k = 64), the target then being
    the adjusted distribution renormalised over those tokens (their mass is nearly all of
    it for a trained model, and the true token, the one the method acts on, is always
    among them). A cache larger than
    ``max_cache_mb`` is refused with an error, never silently truncated. ``forget_loss``
    logs the forget batch's mean answer NLL; ``undial_loss`` the distillation loss.
    """

    name = "undial"
    modalities = ("text",)
    adapters = ("causal_lm",)
    needs = frozenset()
    Params = UNDIALParams
    paper = Paper(
        title="UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large "
        "Language Models",
        authors="Yijiang River Dong, Hongzhou Lin, Mikhail Belkin, Ramon Huerta, Ivan Vulić",
        year=2024,
        url="https://arxiv.org/abs/2402.10052",
        venue="NAACL 2025",
    )
    effect = "raise_forget_loss"
    epoch_over = "forget"
    pair_with = None

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: UNDIALParams = self.params  # type: ignore[assignment]
        self.pair_with = "retain" if p.retain_weight > 0 else None
        #: Per forget example: the teacher's log-probs at its answer positions, ``[n_i, V]``
        #: (or ``[n_i, k + 1]`` with top_k), and their token ids (top_k only).
        self.teacher: list[torch.Tensor] = []
        self.teacher_ids: list[torch.Tensor] = []

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        import torch
        from erasus.data import index_loader

        p: UNDIALParams = self.params  # type: ignore[assignment]
        lm = require_causal_lm(adapter, self.name, "distils the next-token distribution at "
                               "each answer token")
        if self.pair_with and (data.retain is None or len(data.retain) == 0):
            raise IncompatibleComponentError(
                f"strategy '{self.name}' with retain_weight {p.retain_weight:g} needs a "
                "non-empty retain set; pass one, or set retain_weight: 0")
        n = len(data.forget)
        teacher: list[Any] = [None] * n
        ids: list[Any] = [None] * n
        model = lm.model
        was_training = model.training
        model.eval()
        used = 0.0
        done = 0
        try:
            with torch.no_grad():
                for indices, raw in index_loader(data.forget, batch_size=p.batch_size,
                                                 collate_fn=data.collate_fn,
                                                 min_batch_size=lm.min_batch_size):
                    batch = lm.prepare_batch(raw)
                    logits = lm._forward(batch).logits
                    pos = answer_positions(batch["labels"])
                    for row, i in enumerate(indices.tolist()):
                        logp = torch.log_softmax(logits[row][pos[row]].float(), dim=-1)
                        if p.top_k is not None:
                            labels = batch["labels"][row][1:][pos[row][:-1]]
                            top, top_ids = self._top(logp, labels, p.top_k)
                            teacher[i], ids[i] = top.cpu(), top_ids.cpu()
                        else:
                            teacher[i] = logp.cpu()
                        used += teacher[i].numel() * 4
                        if ids[i] is not None:
                            used += ids[i].numel() * 4
                    done += len(indices)
                    if used / 2**20 > p.max_cache_mb:
                        raise IncompatibleComponentError(
                            f"strategy '{self.name}': caching the original model's log-probs "
                            f"over the forget set would take about "
                            f"{used / done * n / 2**20:.0f} MB (max_cache_mb "
                            f"{p.max_cache_mb:g}); set top_k (e.g. 64) or raise max_cache_mb")
        finally:
            model.train(was_training)
        self.teacher = teacher
        self.teacher_ids = ids if p.top_k is not None else []

    @staticmethod
    def _top(logp: torch.Tensor, labels: torch.Tensor, k: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The top-k log-probs and ids of each row, then the true token's (``-inf`` when it
        is already among the top k, so that it counts once)."""
        import torch

        k = min(k, logp.shape[-1])
        top, top_ids = logp.topk(k, dim=-1)
        true = logp.gather(1, labels.view(-1, 1))
        true = true.masked_fill((top_ids == labels.view(-1, 1)).any(dim=1, keepdim=True),
                                float("-inf"))
        return (torch.cat([top, true], dim=1),
                torch.cat([top_ids, labels.view(-1, 1)], dim=1).to(torch.int32))

    def forget_terms(self, adapter: ModelAdapter, forget: dict[str, Any]
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The UNDIAL loss of a forget batch and the values to log with it."""
        import torch

        if not self.teacher:
            raise RuntimeError(f"{self.name}: prepare() must run before loss()")
        p: UNDIALParams = self.params  # type: ignore[assignment]
        lm: Any = adapter
        logits = lm._forward(forget).logits
        labels_all = forget["labels"]
        pos = answer_positions(labels_all)
        per_example = []
        nll = []
        for row, i in enumerate(forget["index"].tolist()):
            log_q = torch.log_softmax(logits[row][pos[row]].float(), dim=-1)
            labels = labels_all[row][1:][pos[row][:-1]]
            teacher = self.teacher[i].to(log_q.device)
            if teacher.shape[0] != log_q.shape[0]:
                raise RuntimeError(f"{self.name}: forget example {i} has {log_q.shape[0]} "
                                   f"answer tokens now and {teacher.shape[0]} when cached")
            if p.top_k is not None:
                support = self.teacher_ids[i].to(log_q.device).long()
                true_col = torch.full_like(labels, support.shape[1] - 1)
                hit = support[:, :-1] == labels.view(-1, 1)
                true_col = torch.where(hit.any(dim=1), hit.float().argmax(dim=1), true_col)
                target = adjusted_targets(teacher, true_col, p.beta)
                loss_t = soft_cross_entropy(log_q.gather(1, support), target)
            else:
                target = adjusted_targets(teacher, labels, p.beta)
                loss_t = soft_cross_entropy(log_q, target)
            per_example.append(loss_t.mean())
            nll.append(-log_q.gather(1, labels.view(-1, 1)).mean())
        undial = torch.stack(per_example).mean()
        return undial, {"undial_loss": undial, "forget_loss": torch.stack(nll).mean().detach()}

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        p: UNDIALParams = self.params  # type: ignore[assignment]
        total, parts = self.forget_terms(adapter, forget)  # type: ignore[arg-type]
        if self.pair_with is not None:
            retain_loss = adapter.per_example_loss(retain).mean()  # type: ignore[arg-type]
            total = total + p.retain_weight * retain_loss
            parts["retain_loss"] = retain_loss
        return {"loss": total, **parts}
