"""Prune first, then unlearn: one-shot magnitude pruning, then masked fine-tuning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.builtin._papers import JIA_2023
from erasus.strategy import LoopParams, LossStrategy

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import History, RunContext, UnlearnData

__all__ = ["SparseAware", "SparseAwareParams"]


class SparseAwareParams(LoopParams):
    """Parameters of prune-then-unlearn (defaults suit the digits benchmark)."""

    epochs: int = Field(5, ge=0, description="Passes over the retain set after pruning.")
    lr: float = Field(3e-2, gt=0, description="Learning rate.")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("sgd", description="Optimizer.")
    sparsity: float = Field(
        0.8, ge=0, lt=1, description="Share of the weights (tensors with two or more "
        "dimensions, ranked globally by magnitude) set to zero and kept at zero.")


class SparseAware(LossStrategy):
    """Prune first, then unlearn: one-shot magnitude pruning, then masked fine-tuning.

    ``prepare`` applies one-shot magnitude pruning (OMP) to the original weights: over all
    weight tensors with two or more dimensions (linear and convolution kernels,
    embeddings; biases and normalisation scales are not pruned), the ``sparsity`` share
    with the smallest ``|theta|`` (one global ranking, ties broken by position) is set to
    zero. The shared loop then fine-tunes on the retain set (mean per-example loss) with
    gradient hooks that zero the pruned entries' gradients, so they stay exactly zero
    (their optimizer state stays zero too, and weight decay of a zero weight is zero).

    How it differs from ``l1_sparse``: that strategy reaches sparsity softly, through an
    L1 penalty during fine-tuning, and prunes nothing; this one imposes a hard, fixed
    sparsity pattern before unlearning and fine-tunes only the surviving weights (the
    paper's "prune first, then unlearn" with FT as the unlearning method).

    Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023.
    """

    name = "sparse_aware"
    shardable = False  # its pruning masks hook whole parameters' gradients
    modalities = ("any",)
    needs = frozenset({"retain"})
    Params = SparseAwareParams
    paper = JIA_2023
    effect = "raise_forget_loss"
    epoch_over = "retain"
    pair_with = None

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        #: The kept (True) / pruned (False) entries of each pruned tensor, set by prepare().
        self.masks: dict[str, torch.Tensor] | None = None

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        import torch

        from erasus.builtin.strategies._importance import scatter, top_fraction
        from erasus.errors import IncompatibleComponentError

        p: SparseAwareParams = self.params  # type: ignore[assignment]
        params = dict(adapter.model.named_parameters())
        names = [n for n, w in params.items() if w.requires_grad and w.dim() >= 2]
        if not names:
            raise IncompatibleComponentError(
                f"strategy 'sparse_aware' prunes weight matrices, but model "
                f"'{adapter.name}' has no trainable parameter with two or more dimensions")
        with torch.no_grad():
            magnitude = torch.cat([params[n].detach().abs().reshape(-1).float()
                                   for n in names])
            pruned = scatter(adapter, names, top_fraction(-magnitude, p.sparsity))
            for n in names:
                params[n].masked_fill_(pruned[n].to(params[n].device), 0.0)
        self.masks = {n: ~m for n, m in pruned.items()}

    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        from erasus.builtin.strategies._importance import masked_unlearn

        return masked_unlearn(self, adapter, data, run)

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        retain_loss = adapter.per_example_loss(retain).mean()
        return {"loss": retain_loss, "retain_loss": retain_loss}
