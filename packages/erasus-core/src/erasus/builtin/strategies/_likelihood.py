"""What the likelihood-based forget losses (npo, simnpo, wga) share.

- :func:`target_likelihood`: a batch's per-target log-likelihood and target length from
  :meth:`ModelAdapter.token_losses`.
- :class:`ForgetPlusRetain`: a loss strategy whose step is a forget term plus an optional
  ``retain_weight * mean(loss(retain batch))``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from erasus.errors import IncompatibleComponentError
from erasus.strategy import LossStrategy

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import RunContext, UnlearnData

__all__ = ["ForgetPlusRetain", "TargetLikelihood", "target_likelihood"]


class TargetLikelihood(NamedTuple):
    """One batch's target likelihood, per example (first dimension of ``losses``)."""

    losses: torch.Tensor
    """Per-token NLLs of :meth:`ModelAdapter.token_losses`."""
    mask: torch.Tensor
    """Its target mask, in the dtype of ``losses``."""
    log_prob: torch.Tensor
    """``log p(y|x) = -(losses * mask).sum()`` per example."""
    length: torch.Tensor
    """``|y| = mask.sum()`` per example: the number of target tokens."""

    def mean_loss(self) -> torch.Tensor:
        """The batch mean of the per-example mean target NLL (``-log p(y|x) / |y|``)."""
        return (-self.log_prob / self.length).mean()


def target_likelihood(adapter: ModelAdapter, batch: dict[str, Any]) -> TargetLikelihood:
    """``log p(y|x)`` and ``|y|`` of every example of ``batch`` under the adapter's model."""
    losses, mask = adapter.token_losses(batch)
    mask = mask.to(losses.dtype)
    return TargetLikelihood(losses, mask, -(losses * mask).sum(dim=1), mask.sum(dim=1))


class ForgetPlusRetain(LossStrategy):
    """A loss strategy over the forget set whose step adds an optional retain term.

    Subclasses implement :meth:`forget_terms` and have a ``retain_weight`` parameter; each
    step minimises ``forget term + retain_weight * mean(loss(retain batch))``. Paired
    retain batches are drawn only when ``retain_weight > 0`` (then ``prepare`` raises if
    the retain set is missing or empty); with 0 the step is the forget term alone.
    """

    epoch_over = "forget"
    pair_with = "retain"
    #: What the missing-retain-set error tells the user to do instead of passing one.
    no_retain_hint = "set retain_weight: 0"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: Any = self.params
        self.pair_with = "retain" if p.retain_weight > 0 else None

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        weight = self.params.retain_weight  # type: ignore[attr-defined]
        if weight > 0 and (data.retain is None or len(data.retain) == 0):
            raise IncompatibleComponentError(
                f"strategy '{self.name}' with retain_weight {weight:g} needs a non-empty "
                f"retain set; pass one, or {self.no_retain_hint}")

    def forget_terms(self, adapter: ModelAdapter, forget: dict[str, Any]
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The forget term to minimise, and the values to log with it."""
        raise NotImplementedError

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        total, parts = self.forget_terms(adapter, forget)  # type: ignore[arg-type]
        if self.pair_with is not None:
            retain_loss = adapter.per_example_loss(retain).mean()
            p: Any = self.params
            total = total + p.retain_weight * retain_loss
            parts["retain_loss"] = retain_loss
        return {"loss": total, **parts}
