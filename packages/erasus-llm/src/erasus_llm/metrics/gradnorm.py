"""GradNorm membership attack: the norm of the loss gradient of each answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from erasus.components import Paper
from erasus.evaluation import Measurement, Metric
from pydantic import Field

from erasus_llm.metrics.mia import MIAParams, mia_auc

if TYPE_CHECKING:
    import numpy as np

__all__ = ["GradNormParams", "MIAGradNorm", "gradient_norms", "mean_parameter_norm"]

_CACHE_ATTR = "_erasus_llm_gradnorms"


def mean_parameter_norm(grads: list[Any], p: float) -> float:
    """The mean over parameter tensors of each gradient's ``p``-norm (open-unlearning's
    statistic: every tensor counts once, whatever its size)."""
    import torch

    return float(torch.stack([g.detach().float().norm(p=p) for g in grads]).mean())


def gradient_norms(ctx: Any, split: str, field: str, p: float, metric: str) -> np.ndarray:
    """Per example of ``split``: :func:`mean_parameter_norm` of the gradient of its mean
    answer NLL (one forward and backward pass per example, cached on the context)."""
    import numpy as np
    import torch

    from erasus_llm.metrics._cache import split_items

    cache: dict[Any, np.ndarray] = ctx.__dict__.setdefault(_CACHE_ATTR, {})
    key = (split, field, p)
    if key in cache:
        return cache[key]
    items = split_items(ctx, split, metric)
    adapter = ctx.adapter
    model = adapter.model
    params = [q for q in model.parameters() if q.is_floating_point()]
    flags = [q.requires_grad for q in params]
    was_training = model.training
    model.eval()
    norms = []
    try:
        for q in params:
            q.requires_grad_(True)
        with torch.enable_grad():
            for item in items:
                batch = adapter.prepare_batch({"question": [item["question"]],
                                               "answer": [item[field]]})
                model.zero_grad(set_to_none=True)
                adapter.per_example_loss(batch).mean().backward()
                ctx.forward_passes = getattr(ctx, "forward_passes", 0) + 1
                norms.append(mean_parameter_norm([q.grad for q in params
                                                  if q.grad is not None], p))
    finally:
        model.zero_grad(set_to_none=True)
        for q, flag in zip(params, flags, strict=True):
            q.requires_grad_(flag)
        model.train(was_training)
    cache[key] = np.asarray(norms, dtype=np.float64)
    return cache[key]


class GradNormParams(MIAParams):
    """Parameters of the GradNorm attack."""

    p: Literal[1, 2, "inf"] = Field(2, description="Norm of each parameter's gradient "
                                    "(1, 2 or 'inf').")


class MIAGradNorm(Metric):
    """GradNorm attack (Wang et al. 2024): score = the mean over parameter tensors of the
    ``p``-norm of the gradient of the example's mean answer NLL; ROC-AUC forget vs holdout.

    Members sit near a minimum of the loss, so their gradients are small: a higher norm
    means less likely a member, the convention of the other attacks. (open-unlearning
    returns the negated norm under the same convention, which inverts its AUC.) Needs a
    backward pass per example, so it runs the model itself (counted in
    ``forward_passes``) rather than reading the shared forward pass; cached per split.
    """

    name = "mia_gradnorm"
    modalities = ("text",)
    needs = frozenset()
    Params = GradNormParams
    paper = Paper(title="Pandora's White-Box: Precise Training Data Detection and Extraction "
                  "in Large Language Models", authors="Jeffrey G. Wang, Jason Wang, Marvin "
                  "Li, Seth Neel", year=2024, url="https://arxiv.org/abs/2402.17012",
                  venue="arXiv")
    outputs = ("mia_gradnorm_auc",)
    scope = "model"

    def compute(self, ctx: Any) -> Measurement:
        p: GradNormParams = self.params  # type: ignore[assignment]
        order = float("inf") if p.p == "inf" else float(p.p)
        members = gradient_norms(ctx, p.forget_split, p.field, order, self.name)
        others = gradient_norms(ctx, p.holdout_split, p.field, order, self.name)
        return Measurement(values={"mia_gradnorm_auc": mia_auc(members, others)},
                           details={"forget_scores": members.tolist(),
                                    "holdout_scores": others.tolist()})
