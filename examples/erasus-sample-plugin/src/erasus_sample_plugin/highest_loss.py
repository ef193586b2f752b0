"""The ``highest_loss`` selector: the forget examples the model fits worst."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from erasus.selection import Selection, Selector, SelectorParams, resolve_budget
from pydantic import Field

if TYPE_CHECKING:
    from erasus.adapters import ModelAdapter

__all__ = ["HighestLoss", "HighestLossParams"]


class HighestLossParams(SelectorParams):
    """Parameters of the ``highest_loss`` selector."""

    batch_size: int = Field(256, ge=1, description="Examples per scoring forward pass.")


class HighestLoss(Selector):
    """Select the forget examples with the highest per-example loss under the model.

    Each forget example is scored by the adapter's per-example training loss (the model
    in eval mode, no gradients); the ``budget`` highest-scoring examples are selected,
    highest first, ties broken by position. A simple heuristic, not a published method:
    it spends the unlearning budget on the examples the model has memorised least
    cleanly. Runs on any adapter that gives a per-example loss.
    """

    name = "highest_loss"
    modalities = ("any",)
    needs = frozenset()
    Params = HighestLossParams
    paper = None

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None) -> Selection:
        """Score every example of ``forget`` and return the positions of the highest."""
        import numpy as np
        import torch
        from erasus.data import index_loader, unwrap

        dataset, loader_collate, _ = unwrap(forget)
        n = len(dataset)
        k = resolve_budget(self.params.budget, n)
        losses = np.empty(n, dtype=np.float64)
        loader = index_loader(dataset, batch_size=self.params.batch_size,
                              collate_fn=collate_fn or loader_collate)
        model = adapter.model
        was_training = model.training
        model.eval()  # dropout or batch-norm updates would make the scores noisy
        try:
            with torch.no_grad():
                for indices, raw in loader:
                    batch = adapter.prepare_batch(raw)
                    loss = adapter.per_example_loss(batch)
                    losses[indices.numpy()] = loss.detach().double().cpu().numpy()
        finally:
            model.train(was_training)
        order = np.argsort(-losses, kind="stable")[:k]
        return Selection(indices=order.astype(np.int64), scores=losses[order],
                         info={"selector": self.name, "score": "per-example loss",
                               "n_forget": n, "k": k})
