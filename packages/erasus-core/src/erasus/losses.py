"""Loss base class and lookup: reusable, registered loss terms that strategies combine.

A loss is a small :class:`Loss` subclass with a ``name``, a documented ``Params`` model and
a ``__call__`` that maps tensors to a scalar loss tensor. Losses are registered through the
``erasus_register_losses`` hook like every other component, so a plugin (or a test, with an
in-process plugin) can add its own; strategies and configs name them, and
:func:`get_loss` builds one by name from a registry::

    from erasus.losses import get_loss

    kl = get_loss("kl_divergence", temperature=2.0)
    loss = kl(student_logits, teacher_logits)

A strategy's ``Params`` can hold a :class:`LossSpec` field (``{name: mmd, bandwidth: 1.0}``
in a config) and build the loss with :meth:`LossSpec.create`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from erasus.components import Component, Params

if TYPE_CHECKING:
    import torch

    from erasus.registry import Registry

__all__ = ["Loss", "LossParams", "LossSpec", "get_loss"]


class LossParams(Params):
    """Parameters every loss accepts."""


class Loss(Component):
    """Base class of losses: ``__call__`` maps tensors to a scalar loss tensor."""

    Params: ClassVar[type[Params]] = LossParams

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError




def _default_registry() -> Registry:
    """The active registry (the run's plugin manager's, else the installed plugins')."""
    from erasus.plugins import active_registry

    return active_registry()


def get_loss(name: str, *, registry: Registry | None = None, **params: Any) -> Loss:
    """The registered loss ``name``, built with validated ``params``.

    Args:
        name: the loss's registry name (``kl_divergence``, ``mmd``, a plugin's loss...).
        registry: where to look it up (``plugin_manager.registry``); default: the registry
            of every installed plugin (built once per process).
        **params: the loss's parameters (validated by its ``Params``).

    Raises:
        ComponentNotFoundError: no loss of that name (with a did-you-mean suggestion).
        pydantic.ValidationError: a parameter is unknown or invalid.
    """
    from erasus.errors import PluginError

    reg = registry if registry is not None else _default_registry()
    loss = reg.create("loss", name, **params)
    if not isinstance(loss, Loss):
        info = reg.get("loss", name)
        raise PluginError(
            f"loss '{name}' (plugin '{info.plugin}') is {type(loss).__name__}, not a subclass "
            "of erasus.losses.Loss; derive it from Loss")
    return loss


class LossSpec(BaseModel):
    """A loss named in a config: ``{name: kl_divergence, temperature: 2.0}``.

    Use it as the type of a strategy parameter; every key but ``name`` is a parameter of
    the loss (checked when the loss is built with :meth:`create`).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(description="Registry name of the loss.")

    @model_validator(mode="before")
    @classmethod
    def _name_only(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @property
    def params(self) -> dict[str, Any]:
        """The loss's parameters (every key but ``name``)."""
        return dict(self.model_extra or {})

    def create(self, registry: Registry | None = None) -> Loss:
        """Build the named loss (see :func:`get_loss`)."""
        return get_loss(self.name, registry=registry, **self.params)
