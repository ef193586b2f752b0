"""Selector base class: choose the coreset of the forget set to unlearn on.

A selector returns a :class:`Selection`: positions in the forget dataset it was given
(never positions in a loader's shuffled order) and one score per selected example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from erasus.components import Component, Params

if TYPE_CHECKING:
    import numpy as np

    from erasus.adapters import ModelAdapter
    from erasus.data import DataInfo
    from erasus.record import TrainingRecord

__all__ = ["Selection", "SelectionContext", "Selector", "SelectorParams", "resolve_budget"]


class SelectorParams(Params):
    """Parameters every selector accepts."""

    budget: float | int = Field(
        1.0,
        description="Coreset size: a float in (0, 1] is a fraction of the forget set, an "
        "int >= 1 a count of examples.")

    @field_validator("budget")
    @classmethod
    def _check_budget(cls, value: float | int) -> float | int:
        if isinstance(value, bool):
            raise ValueError("budget must be a number")
        if isinstance(value, int):
            if value < 1:
                raise ValueError("a count budget must be >= 1")
        elif not 0.0 < value <= 1.0:
            raise ValueError("a fractional budget must be in (0, 1]; give an int for a count")
        return value


def resolve_budget(budget: float | int, n: int) -> int:
    """The number of examples a budget asks for out of ``n`` (at least 1, at most ``n``)."""
    if n <= 0:
        return 0
    k = budget if isinstance(budget, int) else math.ceil(round(budget * n, 9))
    return max(1, min(n, int(k)))


@dataclass
class Selection:
    """Selected positions in the forget dataset, with one score each (higher: chosen first)."""

    indices: np.ndarray
    scores: np.ndarray
    info: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"indices": [int(i) for i in self.indices],
                "scores": [float(s) for s in self.scores], "info": self.info or {}}


@dataclass
class SelectionContext:
    """What a selector may use besides the model and the forget set.

    The pipeline fills it from the benchmark's splits; with the Python API, pass what a
    selector needs to ``Unlearner.fit``. A selector that needs something missing here
    raises an error naming it (``needs`` lists it: ``"retain"``, ``"test"``,
    ``"training_checkpoints"``...).
    """

    retain: Any = None
    test: Any = None
    #: Further named splits (``test_forgotten_class``...), for selectors whose target set
    #: is configurable.
    extra: dict[str, Any] = field(default_factory=dict)
    info: DataInfo | None = None
    record: TrainingRecord | None = None
    #: The training-set index of each forget example (for training-record selectors).
    forget_train_indices: list[int] | None = None
    collate_fn: Any = None

    def split(self, name: str) -> Any:
        """The named set (``retain``, ``test`` or an extra split), or ``None``."""
        if name in ("retain", "test"):
            return getattr(self, name)
        return self.extra.get(name)


class Selector(Component):
    """Base class of selectors.

    ``supports_partial_budget`` is ``False`` for selectors that only ever return the whole
    forget set (``full``): they must refuse a partial budget with an error.
    """

    Params: ClassVar[type[Params]] = SelectorParams
    supports_partial_budget: ClassVar[bool] = True

    def runtime_needs(self) -> frozenset[str]:
        """What this instance needs from the pipeline: the class's ``needs`` by default;
        selectors built from other selectors (``voting``) add their members' needs, so
        the pipeline records the training history a member needs."""
        return frozenset(type(self).needs)

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None, context: SelectionContext | None = None
               ) -> Selection:
        """Choose ``budget`` examples of ``forget`` (a Dataset); return their positions.

        ``context`` carries the other sets and the training record; selectors that need
        none of it may leave the argument out of their signature.
        """
        raise NotImplementedError
