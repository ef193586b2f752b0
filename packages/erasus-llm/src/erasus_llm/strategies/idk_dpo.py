"""IdkDPO: DPO toward refusals on the forget set plus the retain set's NLL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from erasus.errors import IncompatibleComponentError
from pydantic import Field

from erasus_llm.strategies.dpo import DPO, DPO_PAPER, DPOParams

if TYPE_CHECKING:
    import torch
    from erasus.adapters import ModelAdapter
    from erasus.strategy import RunContext, UnlearnData

__all__ = ["IdkDPO", "IdkDPOParams"]


class IdkDPOParams(DPOParams):
    """Parameters of IdkDPO (defaults suit the tiny causal LM)."""

    forget_weight: float = Field(1.0, gt=0, description="Weight of the DPO term "
                                 "(open-unlearning's gamma).")
    retain_weight: float = Field(
        1.0, ge=0, description="Weight of the retain set's mean answer NLL (open-unlearning's "
        "alpha; its DPO term carries an extra factor 2 / beta, so its alpha corresponds to "
        "alpha * beta / 2 here). 0: plain dpo.")


class IdkDPO(DPO):
    """IdkDPO (TOFU's "IDK" preference baseline, as open-unlearning's IdkDPO): DPO + retain NLL.

    Each step minimises ``forget_weight * L_DPO(forget batch) + retain_weight *
    mean NLL(retain batch)``, where ``L_DPO`` is the :class:`~erasus_llm.strategies.dpo.DPO`
    loss (a seeded refusal from the shipped "I don't know" list preferred over the forget
    answer; reference log-likelihoods precomputed once, no reference model kept) and the
    retain term is the causal LM's per-example answer loss on a paired retain batch, which
    keeps the model answering everything else. ``retain_loss`` logs that term.
    """

    name = "idk_dpo"
    needs = frozenset({"retain"})
    Params = IdkDPOParams
    paper = DPO_PAPER

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: IdkDPOParams = self.params  # type: ignore[assignment]
        self.pair_with = "retain" if p.retain_weight > 0 else None

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        p: IdkDPOParams = self.params  # type: ignore[assignment]
        if p.retain_weight > 0 and (data.retain is None or len(data.retain) == 0):
            raise IncompatibleComponentError(
                f"strategy '{self.name}' with retain_weight {p.retain_weight:g} needs a "
                "non-empty retain set; pass one, or use strategy 'dpo' (no retain term)")
        super().prepare(adapter, data, run)

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        p: IdkDPOParams = self.params  # type: ignore[assignment]
        dpo, parts = self.preference_terms(adapter, forget)  # type: ignore[arg-type]
        total = p.forget_weight * dpo
        if self.pair_with is not None:
            retain_loss = adapter.per_example_loss(retain).mean()  # type: ignore[arg-type]
            total = total + p.retain_weight * retain_loss
            parts["retain_loss"] = retain_loss
        return {"loss": total, **parts}
