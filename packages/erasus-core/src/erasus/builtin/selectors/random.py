"""A uniformly random coreset of the forget set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from erasus.selection import Selection, Selector, SelectorParams, resolve_budget

if TYPE_CHECKING:
    from erasus.adapters import ModelAdapter

__all__ = ["RandomSelector"]


class RandomSelector(Selector):
    """Select a uniformly random subset of the forget set (the coreset baseline).

    Draws ``resolve_budget(budget, n)`` distinct positions without replacement with
    ``numpy.random.default_rng(seed)``: the choice depends only on the seed and the forget
    set's size, never on a loader's order or the model. Indices are returned sorted; every
    score is 1 (no example is preferred).
    """

    name = "random"
    modalities = ("any",)
    needs = frozenset()
    Params = SelectorParams
    paper = None

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None) -> Selection:
        import numpy as np

        from erasus.data import unwrap

        dataset, _, _ = unwrap(forget)
        n = len(dataset)
        k = resolve_budget(self.params.budget, n)  # type: ignore[attr-defined]
        rng = np.random.default_rng(int(seed))
        indices = np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
        return Selection(indices=indices, scores=np.ones(k),
                         info={"selector": self.name, "seed": int(seed), "n_forget": n,
                               "k": k})
