"""TracIn (TracInCP): influence traced through the original's training checkpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.builtin.selectors._grad_common import (
    ScoreParams,
    checkpoint_clones,
    forget_data,
    rank,
    target_data,
)
from erasus.components import Paper
from erasus.selection import Selection, SelectionContext, Selector, resolve_budget

if TYPE_CHECKING:
    from erasus.adapters import ModelAdapter
    from erasus.record import CheckpointInfo

__all__ = ["TracIn", "TracInParams", "spaced_checkpoints"]


class TracInParams(ScoreParams):
    """Parameters of TracIn selection."""

    target: str = Field(
        "self", description="'self': each example's self-influence (sum over checkpoints "
        "of lr * squared gradient norm); or a named set ('retain', 'test', 'forget' or an "
        "extra split such as 'test_forgotten_class'): the influence on its mean loss.")
    parameters: str | None = Field(
        None, description="Parameter group to differentiate (a name from the model's "
        "parameter_groups(), e.g. 'head'); null: every trainable parameter.")
    max_checkpoints: int | None = Field(
        3, ge=1, description="Use at most this many recorded checkpoints, evenly spaced "
        "over training, the first and last included (the paper uses a few); null: all.")


def spaced_checkpoints(checkpoints: list[CheckpointInfo], limit: int | None
                       ) -> list[CheckpointInfo]:
    """At most ``limit`` checkpoints, evenly spaced: the last always, the first too if
    ``limit > 1``."""
    if limit is None or len(checkpoints) <= limit:
        return list(checkpoints)
    n = len(checkpoints)
    picks = sorted({n - 1 - round(i * (n - 1) / (limit - 1)) if limit > 1 else n - 1
                    for i in range(limit)})
    return [checkpoints[i] for i in picks]


class TracIn(Selector):
    """Score each forget example by TracInCP over the recorded training checkpoints.

    With checkpoints ``w_1..w_K`` of the original's training (one per epoch; at most
    ``max_checkpoints`` evenly spaced ones, first and last included) and ``lr_k`` the mean
    learning rate of the epoch that ended at ``w_k``::

        score_i = sum_k lr_k * grad L(z_i; w_k) . grad L(target; w_k)

    With ``target: self`` (default) ``grad L(target) = grad L(z_i)`` (self-influence: the
    squared gradient norm, large for examples the model learned against the grain, e.g.
    mislabelled ones). With a named set, ``L(target)`` is its mean loss: positive scores
    mark proponents (training on ``z_i`` lowered the target's loss). Gradients are taken
    per example (``erasus.gradients``) over ``parameters``. Each checkpoint is loaded into a
    clone of the model; the given model is never modified. Needs the training record's
    checkpoints (``context.record``): the pipeline records them when it trains the
    original; otherwise a clear error. Returns the ``budget`` highest scores, best first.
    """

    name = "tracin"
    modalities = ("any",)
    needs = frozenset({"training_checkpoints"})
    Params = TracInParams
    paper = Paper(
        title="Estimating Training Data Influence by Tracing Gradient Descent",
        authors="Garima Pruthi, Frederick Liu, Satyen Kale, Mukund Sundararajan",
        year=2020,
        url="https://arxiv.org/abs/2002.08484",
        venue="NeurIPS",
    )

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None, context: SelectionContext | None = None
               ) -> Selection:
        import numpy as np

        from erasus.gradients import iter_example_grads, mean_grad
        from erasus.record import require_record

        p: TracInParams = self.params  # type: ignore[assignment]
        record = require_record(context.record if context is not None else None,
                                "checkpoints", f"selector {self.name}")
        dataset, collate_fn = forget_data(forget, collate_fn)
        n = len(dataset)
        k = resolve_budget(p.budget, n)
        target = None
        if p.target != "self":
            target = target_data(p.target, forget=dataset, context=context,
                                 collate_fn=collate_fn, selector=self.name)
        chosen = spaced_checkpoints(record.checkpoints(), p.max_checkpoints)
        scores = np.zeros(n, dtype=np.float64)
        used = []
        for checkpoint, clone in checkpoint_clones(adapter, record,
                                                   [c.epoch for c in chosen], self.name):
            g_target = None
            if target is not None:
                g_target = mean_grad(clone, target[0], names=p.parameters,
                                     batch_size=p.batch_size, collate_fn=target[1]).double()
            for indices, grads in iter_example_grads(clone, dataset, names=p.parameters,
                                                     batch_size=p.batch_size,
                                                     collate_fn=collate_fn):
                grads = grads.double()
                dots = (grads * grads).sum(1) if g_target is None else grads @ g_target
                scores[indices.numpy()] += checkpoint.lr * dots.cpu().numpy()
            used.append({"epoch": checkpoint.epoch, "lr": checkpoint.lr})
        indices, top = rank(scores, k, self.name)
        return Selection(indices=indices, scores=top, info={
            "selector": self.name, "n_forget": n, "k": k, "target": p.target,
            "parameters": p.parameters or "all", "checkpoints": used,
            "recorded_checkpoints": len(record.checkpoints())})
