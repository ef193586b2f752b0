"""The whole forget set: no coreset selection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import field_validator

from erasus.errors import IncompatibleComponentError
from erasus.selection import Selection, Selector, SelectorParams

if TYPE_CHECKING:
    from erasus.adapters import ModelAdapter

__all__ = ["FullSelector", "FullSelectorParams"]

_HINT = ("selector 'full' keeps the whole forget set; for a coreset use selector 'random' "
         "(or another selector) with that budget")


class FullSelectorParams(SelectorParams):
    """Parameters of the full selector: the budget must cover the whole forget set."""

    @field_validator("budget")
    @classmethod
    def _whole_set(cls, value: float | int) -> float | int:
        if isinstance(value, float) and value < 1.0:
            raise ValueError(f"budget {value} asks for a fraction of the forget set; {_HINT}")
        return value


class FullSelector(Selector):
    """Select every example of the forget set (the default), each with score 1.

    The budget must be 1.0 (or a count at least the forget set's size); a smaller budget is
    an error rather than a silent "everything", so use ``random`` or another selector for
    a coreset.
    """

    name = "full"
    modalities = ("any",)
    needs = frozenset()
    Params = FullSelectorParams
    paper = None
    #: Only ever the whole set: a partial budget is refused (read by the conformance suite).
    supports_partial_budget = False

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None) -> Selection:
        import numpy as np

        from erasus.data import unwrap

        dataset, _, _ = unwrap(forget)
        n = len(dataset)
        budget = self.params.budget  # type: ignore[attr-defined]
        if isinstance(budget, int) and budget < n:
            raise IncompatibleComponentError(
                f"budget {budget} (a count) is smaller than the forget set ({n} examples); "
                f"write budget: 1.0 for the whole set, or {_HINT[_HINT.index('for a'):]}")
        return Selection(indices=np.arange(n, dtype=np.int64), scores=np.ones(n),
                         info={"selector": self.name, "n_forget": n})
