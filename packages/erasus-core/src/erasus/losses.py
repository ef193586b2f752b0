"""Loss base class: a reusable, registered loss term that strategies can combine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from erasus.components import Component, Params

if TYPE_CHECKING:
    import torch

__all__ = ["Loss", "LossParams"]


class LossParams(Params):
    """Parameters every loss accepts."""


class Loss(Component):
    """Base class of losses: ``__call__`` maps tensors to a scalar loss tensor."""

    Params: ClassVar[type[Params]] = LossParams

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError
