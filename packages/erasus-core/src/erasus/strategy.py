"""Strategy base classes: loss-based strategies and one-step (``apply``) strategies.

A loss-based strategy is one small :meth:`LossStrategy.loss` function plus declared
needs; the core's :func:`erasus.training.train_loop` drives it (optimizer, scheduler,
gradient accumulation, checkpoints, resume, the divergence guard, progress, hooks).
Strategies that are not loss-based override :meth:`Strategy.unlearn` and do their edit in
one step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from erasus.components import Component, Params

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.checkpoint import CheckpointStore
    from erasus.data import DataInfo
    from erasus.record import Recorder, TrainingRecord

__all__ = [
    "History",
    "LoopParams",
    "LossStrategy",
    "RunContext",
    "Strategy",
    "StrategyParams",
    "UnlearnData",
    "quantized_model_problem",
]


class StrategyParams(Params):
    """Parameters every strategy accepts."""


class LoopParams(StrategyParams):
    """The shared training loop's parameters (every loss-based strategy has them)."""

    epochs: int = Field(5, ge=0, description="Passes over the strategy's primary set.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("adam", description="Optimizer.")
    momentum: float = Field(0.9, ge=0, description="Momentum (SGD only).")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay.")
    batch_size: int = Field(64, ge=1, description="Examples per batch of each set.")
    grad_accum: int = Field(1, ge=1, description="Batches accumulated per optimizer step.")
    scheduler: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="Learning-rate schedule over all optimizer steps.")
    grad_clip: float | None = Field(None, gt=0, description="Clip the gradient norm to this.")
    checkpoint_every: int = Field(
        50, ge=0, description="Write a resumable checkpoint every N optimizer steps (0: never).")
    max_abs_loss: float = Field(
        1e4, gt=0, description="Divergence guard: stop when |loss| exceeds this (or is NaN).")
    stop_forget_loss: float | None = Field(
        None, description="Early stopping: end training once a step's mean forget loss "
        "(logged as forget_loss) reaches this value.")
    stop_forget_accuracy: float | None = Field(
        None, ge=0, le=1, description="Early stopping: after each epoch, measure accuracy on "
        "the forget set (classifier adapters) and end training once it is at most this.")


@dataclass
class UnlearnData:
    """The data a strategy unlearns with: the (selected) forget set and the retain set."""

    forget: Any
    retain: Any | None = None
    info: DataInfo | None = None
    collate_fn: Any = None
    #: The training-set index of each forget example (``Splits.train`` positions, in
    #: forget-set order), when known: what training-record methods (Amnesiac) match on.
    forget_train_indices: list[int] | None = None


@dataclass
class RunContext:
    """What the pipeline provides to a strategy besides the model and the data."""

    seed: int = 0
    checkpoints: CheckpointStore | None = None
    on_step: Callable[[int, dict[str, float]], None] | None = None
    progress: bool = False
    reference: ModelAdapter | None = None
    description: str = "unlearning"
    #: The original model's training record, for strategies that declare a
    #: ``training_*`` need (see :mod:`erasus.record`).
    record: TrainingRecord | None = None
    #: Attached while the pipeline trains the original: the loop reports every step to it.
    recorder: Recorder | None = None
    #: Record per-layer gradient norms during training (``History.gradient_norms``),
    #: asked for by a reporter (the gradient-flow plot).
    record_gradient_norms: bool = False


@dataclass
class History:
    """What a strategy did: one record per optimizer step, and the step count."""

    steps: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None
    #: Why training ended before its epochs were done (early stopping), if it did.
    stopped_early: str | None = None
    #: Per-layer gradient norms at sampled steps, when the run asked for them:
    #: ``[{"step": int, "norms": {parameter name: L2 norm}}]``.
    gradient_norms: list[dict[str, Any]] = field(default_factory=list)

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"steps": self.steps, "resumed_from": self.resumed_from,
                               "stopped_early": self.stopped_early}
        if self.gradient_norms:
            out["gradient_norms"] = self.gradient_norms
        return out


class Strategy(Component):
    """Base class of strategies: ``unlearn`` edits the adapter's model in place.

    ``effect`` declares the intended direction of the change, which the conformance
    suites check: one of ``erasus.testing.conformance.EFFECTS`` (``"raise_forget_loss"``,
    ``"fit_retain"``, ``"retrain_from_scratch"``, ``"change_weights"``) or a tuple of them.
    """

    Params: ClassVar[type[Params]] = StrategyParams
    effect: ClassVar[str | tuple[str, ...] | None] = None
    #: Whether the strategy trains adapters beside a frozen base (lora) rather than the
    #: model's own weights: the only kind that may run on a quantized model.
    trains_adapters: ClassVar[bool] = False
    #: Whether the strategy may run while training is sharded (``run.sharding``, see
    #: :mod:`erasus.sharding`). Set it to ``False`` when the strategy reaches into the
    #: trained model's parameters or layers itself during training (parameter hooks,
    #: gradient masks, penalties on the weights, forward hooks on its layers): under
    #: sharding those are split across processes.
    shardable: ClassVar[bool] = True

    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        raise NotImplementedError


class LossStrategy(Strategy):
    """A strategy defined by one loss, driven by the core's shared training loop.

    ``epoch_over`` names the set one epoch passes over (``"forget"`` or ``"retain"``);
    ``pair_with`` names the other set drawn alongside each batch (or ``None``).
    """

    Params: ClassVar[type[Params]] = LoopParams
    epoch_over: ClassVar[str] = "forget"
    pair_with: ClassVar[str | None] = None

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        """Called once before training (re-initialise weights, draw random labels...)."""

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        """The loss of one step: ``{"loss": total, ...named parts for logging}``."""
        raise NotImplementedError

    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        from erasus.training import train_loop

        self.prepare(adapter, data, run)
        return train_loop(self, adapter, data, run)


def quantized_model_problem(strategy: type, quantization: str | None,
                            model: str) -> str | None:
    """Why ``strategy`` cannot unlearn model ``model`` loaded with ``quantization`` (a
    strategy that edits the weights themselves, on quantized weights), or ``None``."""
    if not quantization or getattr(strategy, "trains_adapters", False):
        return None
    name = getattr(strategy, "name", strategy.__name__)
    return (f"strategy '{name}' edits the model's own weights, but model '{model}' is "
            f"loaded quantized (quantization: {quantization}), whose weights cannot be "
            f"trained or edited; run it on low-rank adapters (QLoRA): strategy {{name: "
            f"lora, strategy: {name}}}, or load the model without quantization")
