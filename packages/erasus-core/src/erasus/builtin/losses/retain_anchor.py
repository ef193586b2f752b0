"""Retain anchor: an L2 pull of the weights toward the original model's (L2-SP)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.losses import Loss, LossParams

if TYPE_CHECKING:
    import torch

__all__ = ["RetainAnchor", "RetainAnchorParams"]


class RetainAnchorParams(LossParams):
    """Parameters of the retain anchor."""

    weight: float = Field(1.0, ge=0, description="Factor on the squared distance.")
    group: str = Field(
        "all", description="Parameter group of the model adapter to anchor (its "
        "parameter_groups(): 'all', 'head', 'body'...); a plain torch module has only 'all'.")
    include: list[str] = Field(
        default_factory=list, description="Keep only parameters whose name starts with one "
        "of these prefixes (empty: every parameter of the group).")


def _module(model: Any) -> Any:
    return getattr(model, "model", model)


class RetainAnchor(Loss):
    """L2 anchor to the original weights: ``weight * sum_i ||theta_i - theta0_i||^2``.

    ``loss(model, reference)`` sums, over the chosen parameters ``i`` (the adapter's
    parameter group ``group``, filtered by the name prefixes ``include``), the squared
    Euclidean distance between the trainable weights ``theta_i`` of ``model`` and the
    weights ``theta0_i`` of the same name in ``reference`` (the frozen original; no
    gradient flows into it). Its gradient ``2 * weight * (theta - theta0)`` pulls the
    weights back toward the original's, so an unlearning update that only needs to touch
    the forget set does not drift on what it should retain. This is the L2-SP
    regulariser of Li et al. (2018), the starting-point anchor that EWC (Kirkpatrick et
    al., 2017) weights per parameter by the Fisher information: pass ``importance={name:
    tensor}`` to weight each parameter's squared difference elementwise (EWC's penalty
    with ``weight = lambda / 2``).

    ``model`` and ``reference`` are model adapters or torch modules with the same
    parameter names and shapes.
    """

    name = "retain_anchor"
    modalities = ("any",)
    needs = frozenset({"reference_model"})
    Params = RetainAnchorParams
    paper = Paper(
        title="Explicit Inductive Bias for Transfer Learning with Convolutional Networks",
        authors="Xuhong Li, Yves Grandvalet, Franck Davoine",
        year=2018,
        url="https://arxiv.org/abs/1802.01483",
        venue="ICML",
    )

    def parameter_names(self, model: Any) -> list[str]:
        """The names of the parameters this anchor covers on ``model``."""
        p: RetainAnchorParams = self.params  # type: ignore[assignment]
        groups = (model.parameter_groups() if hasattr(model, "parameter_groups")
                  else {"all": [n for n, _ in _module(model).named_parameters()]})
        if p.group not in groups:
            raise IncompatibleComponentError(
                f"loss 'retain_anchor': no parameter group '{p.group}'; the model has "
                f"{', '.join(sorted(groups))}")
        names = list(groups[p.group])
        if p.include:
            names = [n for n in names if any(n.startswith(prefix) for prefix in p.include)]
        if not names:
            raise IncompatibleComponentError(
                f"loss 'retain_anchor': no parameter of group '{p.group}' starts with "
                f"{p.include}; check the prefixes against the model's parameter names")
        return names

    def __call__(self, model: Any, reference: Any, *,
                 importance: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        p: RetainAnchorParams = self.params  # type: ignore[assignment]
        current = dict(_module(model).named_parameters())
        original = dict(_module(reference).named_parameters())
        total = None
        for name in self.parameter_names(model):
            theta = current[name]
            if name not in original or original[name].shape != theta.shape:
                raise IncompatibleComponentError(
                    f"loss 'retain_anchor': the reference model has no parameter '{name}' of "
                    f"shape {tuple(theta.shape)}; anchor to a copy of the same architecture")
            diff = (theta - original[name].detach().to(theta.device, theta.dtype)).pow(2)
            if importance is not None and name in importance:
                diff = diff * importance[name].to(diff.device, diff.dtype)
            term = diff.sum()
            total = term if total is None else total + term
        assert total is not None
        return p.weight * total
