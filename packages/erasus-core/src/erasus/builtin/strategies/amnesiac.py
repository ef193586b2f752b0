"""Amnesiac unlearning: undo the recorded parameter updates of the batches that held forget data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.builtin._papers import GRAVES_2021
from erasus.errors import IncompatibleComponentError
from erasus.strategy import LoopParams, LossStrategy

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import RunContext, UnlearnData

__all__ = ["Amnesiac", "AmnesiacParams", "undo_updates"]


class AmnesiacParams(LoopParams):
    """Parameters of amnesiac unlearning (defaults suit the digits benchmark)."""

    epochs: int = Field(2, ge=0, description="Repair passes over the retain set after the "
                        "updates are undone (0: no repair).")
    lr: float = Field(5e-3, gt=0, description="Learning rate of the repair training.")
    batch_size: int = Field(32, ge=1, description="Examples per repair batch.")


def undo_updates(adapter: ModelAdapter, updates: Any, forget_train_indices: Any
                 ) -> tuple[int, int]:
    """Subtract from ``adapter.model`` the delta of every step whose examples include one of
    ``forget_train_indices``; ``updates`` yields ``(train_indices, delta)`` per step (as
    :meth:`erasus.record.TrainingRecord.updates`). Returns ``(undone, total)`` steps.

    The deltas are summed in float32 (at least) and subtracted once.
    """
    import numpy as np
    import torch

    forget = np.asarray(sorted({int(i) for i in forget_train_indices}), dtype=np.int64)
    params = dict(adapter.model.named_parameters())
    sums: dict[str, torch.Tensor] = {}
    undone = total = 0
    for indices, delta in updates:
        total += 1
        if not np.isin(np.asarray(indices), forget).any():
            continue
        undone += 1
        for name, d in delta.items():
            if name not in params:
                raise IncompatibleComponentError(
                    f"strategy 'amnesiac': the training record holds updates of parameter "
                    f"'{name}', which the model does not have; the record belongs to another "
                    "model")
            acc = sums.get(name)
            if acc is None:
                dtype = torch.promote_types(params[name].dtype, torch.float32)
                acc = sums[name] = torch.zeros(params[name].shape, dtype=dtype,
                                               device=params[name].device)
            acc += d.to(device=acc.device, dtype=acc.dtype)
    with torch.no_grad():
        for name, acc in sums.items():
            p = params[name]
            p.copy_((p.to(acc.dtype) - acc).to(p.dtype))
    return undone, total


class Amnesiac(LossStrategy):
    """Amnesiac unlearning (Graves et al., AAAI 2021): subtract the forget batches' updates.

    When the original was trained, Erasus recorded each optimizer step's parameter delta
    and the training indices of its examples (``needs = training_updates``; see
    :mod:`erasus.record`). ``prepare`` subtracts, from the current weights, the sum of the
    deltas of EVERY step whose batch contained a forget example (matched through
    ``UnlearnData.forget_train_indices``); then the shared loop runs ``epochs`` repair
    passes over the retain set minimising the mean per-example loss, as the paper does
    to recover the accuracy lost with the other examples of those batches. With
    ``epochs: 0`` only the subtraction happens.

    The more steps contained forget data, the more of training is undone: forgetting a
    few examples undoes a few steps per epoch, but a random 10% of a training set touches
    almost every batch, which brings the weights close to their initialisation (the
    repair then does most of the work). ``undone_steps`` and ``recorded_steps`` tell
    after a run how many steps were subtracted. Without a record of updates this raises
    the error of :func:`erasus.record.require_record`.
    """

    name = "amnesiac"
    modalities = ("any",)
    needs = frozenset({"training_updates", "retain"})
    Params = AmnesiacParams
    paper = GRAVES_2021
    effect = "raise_forget_loss"
    epoch_over = "retain"
    pair_with = None

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        #: Steps whose updates were subtracted, and steps recorded (set by prepare()).
        self.undone_steps: int | None = None
        self.recorded_steps: int | None = None

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        from erasus.record import require_record

        record = require_record(run.record, "updates", f"strategy {self.name}")
        indices = data.forget_train_indices
        if indices is None:
            raise IncompatibleComponentError(
                f"strategy '{self.name}' matches forget examples to the recorded training "
                "steps by their training-set index, but UnlearnData.forget_train_indices is "
                "not set; the pipeline sets it for data sets that give forget_indices")
        bad = [i for i in indices if not 0 <= int(i) < record.train_size]
        if bad:
            raise IncompatibleComponentError(
                f"strategy '{self.name}': forget training indices {bad[:5]} are outside the "
                f"recorded training set of {record.train_size} examples")
        undone, total = undo_updates(adapter, record.updates(), indices)
        if indices and undone == 0:
            raise IncompatibleComponentError(
                f"strategy '{self.name}': none of the {total} recorded training steps contains "
                "a forget example, so there is nothing to undo; the record does not belong to "
                "the training that saw this forget set")
        self.undone_steps, self.recorded_steps = undone, total

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        retain_loss = adapter.per_example_loss(retain).mean()
        return {"loss": retain_loss, "retain_loss": retain_loss}
