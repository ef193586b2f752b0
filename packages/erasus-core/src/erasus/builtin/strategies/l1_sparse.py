"""l1-sparse unlearning: fine-tune on the retain set with a decaying L1 penalty."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.builtin._papers import JIA_2023
from erasus.strategy import LoopParams, LossStrategy

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import History, RunContext, UnlearnData

__all__ = ["L1Sparse", "L1SparseParams"]

class L1SparseParams(LoopParams):
    """Parameters of l1-sparse unlearning (defaults suit the digits benchmark)."""

    epochs: int = Field(5, ge=0, description="Passes over the retain set.")
    lr: float = Field(3e-2, gt=0, description="Learning rate.")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("sgd", description="Optimizer.")
    gamma: float = Field(
        2e-3, ge=0, description="Initial weight of the L1 penalty gamma * ||theta||_1; it "
        "decays linearly to gamma / epochs in the last epoch (the paper's schedule).")


class L1Sparse(LossStrategy):
    """Sparsity-aware unlearning: fine-tune on the retain set with a decaying L1 penalty.

    The shared loop minimises ``mean(loss(retain batch)) + gamma_t * ||theta||_1`` over
    all trainable weights, starting from the original model, with the penalty weight
    decaying linearly over the epochs as in the authors' code:
    ``gamma_t = gamma * (1 - e / epochs)`` in epoch ``e`` (0-based). The step, hence the
    epoch, is tracked from the loop's step reports and a resumed run starts from its
    checkpoint's step, so resuming gives the same schedule. The penalty drives weights
    towards zero while fine-tuning erases the forget set's influence (sparse models are
    easier to unlearn: the paper's "l1-sparse MU"). ``retain_loss``, ``l1_norm`` and
    ``gamma`` are logged. The penalty is a plain sum over every weight, as in the paper, so
    on a large model ``gamma * ||theta||_1`` can exceed the loop's divergence guard: lower
    ``gamma`` or raise ``max_abs_loss`` there.

    Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023.
    """

    name = "l1_sparse"
    shardable = False  # its L1 penalty acts on the whole weights
    modalities = ("any",)
    needs = frozenset({"retain"})
    Params = L1SparseParams
    paper = JIA_2023
    effect = "fit_retain"
    epoch_over = "retain"
    pair_with = None

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._step = 0
        self._steps_per_epoch = 1

    def current_gamma(self) -> float:
        """The penalty weight of the optimizer step being computed."""
        p: L1SparseParams = self.params  # type: ignore[assignment]
        epoch = self._step // max(1, self._steps_per_epoch)
        return p.gamma * max(0.0, 1.0 - epoch / max(1, p.epochs))

    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        from erasus.training import epoch_batches, train_loop

        p: L1SparseParams = self.params  # type: ignore[assignment]
        if data.retain is not None and len(data.retain) > 0:
            batches = len(epoch_batches(len(data.retain), p.batch_size, run.seed, 0,
                                        adapter.min_batch_size))
            self._steps_per_epoch = math.ceil(batches / p.grad_accum)
        store = run.checkpoints
        self._step = (store.last_step() or 0) if store is not None else 0
        outer = run.on_step

        def on_step(step: int, logged: dict[str, float]) -> None:
            self._step = step
            if outer is not None:
                outer(step, logged)

        return train_loop(self, adapter, data, dataclasses.replace(run, on_step=on_step))

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        import torch

        retain_loss = adapter.per_example_loss(retain).mean()
        weights = [p for p in adapter.model.parameters() if p.requires_grad]
        l1 = torch.stack([w.abs().sum() for w in weights]).sum()
        gamma = self.current_gamma()
        total = retain_loss + gamma * l1
        return {"loss": total, "retain_loss": retain_loss, "l1_norm": l1.detach(),
                "gamma": torch.tensor(gamma)}
