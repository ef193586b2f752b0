"""The training record: what training the original model left behind for later methods.

Some methods need the history of how the original was trained, not just its weights:
TracIn sums gradient dot products over training checkpoints, forgetting events count
how often an example flips from learned to forgotten across epochs, and Amnesiac
unlearning subtracts the parameter updates of the batches that held the forget data.
When a run's selector or strategy declares one of :data:`RECORD_KINDS` in its ``needs``,
the pipeline trains the original with a :class:`Recorder` attached to the shared
training loop, and hands the finished :class:`TrainingRecord` to the selector
(``context.record``) and the strategy (``run.record``).

Indices in a record are positions in the training set the original was trained on
(``Splits.train``); ``forget_train_indices`` in the selection context and in
:class:`erasus.strategy.UnlearnData` map forget-set positions to them.

On disk (a directory, written once by the recorder, then read-only)::

    record.json                  kinds, train size, checkpoint list, step count
    checkpoints/epoch-0003.safetensors   weights after each epoch (``"checkpoints"``)
    correctness.npy              [epochs, n_train] int8: 1 correct, 0 wrong, -1 unseen
    updates/step-000012.safetensors      parameter delta of each optimizer step, and
                                 the training indices of its examples (``"updates"``)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erasus.errors import IncompatibleComponentError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from erasus.adapters import ModelAdapter

__all__ = ["RECORD_KINDS", "CheckpointInfo", "Recorder", "TrainingRecord", "record_kinds",
           "require_record"]

#: The kinds of training history a component may declare in ``needs``.
RECORD_KINDS = ("checkpoints", "correctness", "updates")
_NEEDS_PREFIX = "training_"


def record_kinds(needs: Iterable[str]) -> frozenset[str]:
    """The record kinds named in a component's ``needs`` (``"training_checkpoints"``...)."""
    return frozenset(n[len(_NEEDS_PREFIX):] for n in needs
                     if n.startswith(_NEEDS_PREFIX) and n[len(_NEEDS_PREFIX):] in RECORD_KINDS)


@dataclass(frozen=True)
class CheckpointInfo:
    """One recorded checkpoint: the weights after ``epoch`` (``step`` optimizer steps).

    ``lr`` is the mean learning rate of the epoch that ended there (TracIn's step size).
    """

    epoch: int
    step: int
    lr: float
    file: str


class TrainingRecord:
    """A finished training record (read-only); see the module docstring for the layout."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        meta_file = self.directory / "record.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"no training record in {self.directory} (record.json "
                                    "missing)")
        meta = json.loads(meta_file.read_text())
        self.kinds: frozenset[str] = frozenset(meta["kinds"])
        self.train_size: int = int(meta["train_size"])
        self.num_steps: int = int(meta.get("num_steps", 0))
        self._checkpoints = [CheckpointInfo(**c) for c in meta.get("checkpoints", [])]
        self._steps: list[dict[str, Any]] = meta.get("steps", [])

    def __repr__(self) -> str:
        return (f"TrainingRecord({str(self.directory)!r}, kinds={sorted(self.kinds)}, "
                f"train_size={self.train_size})")

    def checkpoints(self) -> list[CheckpointInfo]:
        """The checkpoints in training order (one per epoch)."""
        return list(self._checkpoints)

    def load_checkpoint(self, checkpoint: CheckpointInfo, adapter: ModelAdapter) -> None:
        """Load a checkpoint's weights into ``adapter.model`` (safetensors)."""
        from safetensors.torch import load_model

        load_model(adapter.model, str(self.directory / checkpoint.file),
                   device=str(adapter.device))

    def correctness(self) -> np.ndarray:
        """``[epochs, n_train]`` int8: whether each example was classified correctly when
        it was presented in each epoch (1), wrongly (0), or not seen that epoch (-1)."""
        import numpy as np

        return np.load(self.directory / "correctness.npy")

    def updates(self) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
        """``(train_indices, delta)`` for every optimizer step, in order: the training
        indices of the step's examples and the change of each parameter the step made."""
        import numpy as np
        from safetensors.torch import load_file

        for entry in self._steps:
            tensors = load_file(str(self.directory / entry["file"]))
            yield np.asarray(entry["indices"], dtype=np.int64), tensors

    def step_indices(self) -> list[np.ndarray]:
        """The training indices of every optimizer step's examples (cheap: no tensors)."""
        import numpy as np

        return [np.asarray(e["indices"], dtype=np.int64) for e in self._steps]


def require_record(record: TrainingRecord | None, kind: str, component: str) -> TrainingRecord:
    """``record`` if it holds ``kind``; otherwise an error saying how to get one."""
    if record is None or kind not in record.kinds:
        have = (f"the record given holds only {', '.join(sorted(record.kinds)) or 'nothing'}"
                if record is not None else "no training record was given")
        raise IncompatibleComponentError(
            f"'{component}' needs the original model's training {kind} ({have}). Erasus "
            "records them when it trains the original itself: leave model.path unset so "
            "`erasus run` trains it (the bundled benchmarks do), or pass "
            "training_record=TrainingRecord(dir) to the Python API with a record written "
            "by erasus.record.Recorder.")
    return record


class Recorder:
    """Collects a training record while the shared loop trains (attach via RunContext).

    ``positions`` maps the loop's dataset positions to training-set indices (identity
    when the loop trains on ``Splits.train`` itself).
    """

    def __init__(self, directory: str | Path, kinds: Iterable[str], train_size: int,
                 positions: list[int] | None = None) -> None:
        kinds = frozenset(kinds)
        unknown = sorted(kinds - set(RECORD_KINDS))
        if unknown:
            raise ValueError(f"unknown record kinds {unknown}; choose from {RECORD_KINDS}")
        self.directory = Path(directory)
        self.kinds = kinds
        self.train_size = int(train_size)
        self.positions = positions
        self._checkpoints: list[dict[str, Any]] = []
        self._steps: list[dict[str, Any]] = []
        self._correct: list[Any] = []
        self._epoch_lrs: list[float] = []
        self._before: dict[str, torch.Tensor] | None = None
        self._step_indices: list[int] = []
        self.directory.mkdir(parents=True, exist_ok=True)

    def _train_index(self, positions: Iterable[int]) -> list[int]:
        if self.positions is None:
            return [int(i) for i in positions]
        return [int(self.positions[i]) for i in positions]

    # -- called by the training loop -----------------------------------------------------
    def before_step(self, model: torch.nn.Module) -> None:
        """Before an optimizer step: remember the weights (for ``updates``)."""
        self._step_indices = []
        if "updates" in self.kinds:
            self._before = {n: p.detach().clone() for n, p in model.named_parameters()
                            if p.requires_grad}

    def on_batch(self, adapter: ModelAdapter, batch: dict[str, Any], epoch: int) -> None:
        """A batch of the step: its example positions, and correctness as presented."""
        import numpy as np
        import torch

        positions = batch["index"].detach().cpu().tolist()
        self._step_indices += positions
        if "correctness" not in self.kinds:
            return
        labels_fn = getattr(adapter, "labels", None)
        if not callable(labels_fn):
            raise IncompatibleComponentError(
                f"recording per-example correctness (forgetting events) needs a "
                f"classification model adapter with labels(); '{adapter.name}' has none")
        while len(self._correct) <= epoch:
            self._correct.append(np.full(self.train_size, -1, dtype=np.int8))
        with torch.no_grad():
            logits = adapter.outputs(batch)["logits"]
            right = (logits.argmax(-1) == labels_fn(batch)).cpu().numpy().astype(np.int8)
        self._correct[epoch][self._train_index(positions)] = right

    def after_step(self, model: torch.nn.Module, step: int, lr: float) -> None:
        """After an optimizer step: store its parameter delta and example indices."""
        self._epoch_lrs.append(lr)
        entry: dict[str, Any] = {"step": step, "indices": self._train_index(self._step_indices)}
        if "updates" in self.kinds and self._before is not None:
            from safetensors.torch import save_file

            delta = {n: (p.detach() - self._before[n]).cpu().contiguous()
                     for n, p in model.named_parameters() if n in self._before}
            entry["file"] = f"updates/step-{step:06d}.safetensors"
            (self.directory / "updates").mkdir(exist_ok=True)
            save_file(delta, str(self.directory / entry["file"]))
            self._before = None
        self._steps.append(entry)

    def end_epoch(self, model: torch.nn.Module, epoch: int, step: int) -> None:
        """After an epoch: a weight checkpoint (for ``checkpoints``)."""
        lr = sum(self._epoch_lrs) / len(self._epoch_lrs) if self._epoch_lrs else 0.0
        self._epoch_lrs = []
        if "checkpoints" not in self.kinds:
            return
        from safetensors.torch import save_model

        name = f"checkpoints/epoch-{epoch:04d}.safetensors"
        (self.directory / "checkpoints").mkdir(exist_ok=True)
        save_model(model, str(self.directory / name))
        self._checkpoints.append({"epoch": epoch, "step": step, "lr": lr, "file": name})

    def finish(self) -> TrainingRecord:
        """Write ``record.json`` (and the correctness table); return the record."""
        import numpy as np

        if "correctness" in self.kinds:
            table = (np.stack(self._correct) if self._correct
                     else np.zeros((0, self.train_size), dtype=np.int8))
            np.save(self.directory / "correctness.npy", table)
        steps = self._steps if "updates" in self.kinds else [
            {"step": s["step"], "indices": s["indices"]} for s in self._steps]
        meta = {"kinds": sorted(self.kinds), "train_size": self.train_size,
                "num_steps": len(self._steps), "checkpoints": self._checkpoints,
                "steps": steps}
        (self.directory / "record.json").write_text(json.dumps(meta) + "\n")
        return TrainingRecord(self.directory)
