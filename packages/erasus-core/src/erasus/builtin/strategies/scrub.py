"""SCRUB: max-min distillation from the original model (forget: move away; retain: stay close)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.builtin._papers import KURMANJI_2023
from erasus.errors import IncompatibleComponentError
from erasus.strategy import LoopParams, LossStrategy

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.checkpoint import CheckpointStore
    from erasus.strategy import History, RunContext, UnlearnData

__all__ = ["SCRUB", "SCRUBParams", "distill_kl", "logits_of", "require_reference",
           "teacher_logits"]


class SCRUBParams(LoopParams):
    """Parameters of SCRUB (defaults suit the digits benchmark)."""

    epochs: int = Field(2, ge=0, description="SCRUB epochs; each ends with a min phase (one "
                        "pass over the retain set).")
    msteps: int = Field(
        2, ge=0, description="How many of the first epochs start with a max phase (one pass "
        "over the forget set): SCRUB's msteps.")
    lr: float = Field(2e-3, gt=0, description="Learning rate.")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("adam", description="Optimizer.")
    batch_size: int = Field(64, ge=1, description="Retain examples per min-step batch.")
    forget_batch_size: int = Field(32, ge=1, description="Forget examples per max-step batch.")
    temperature: float = Field(4.0, gt=0, description="Distillation temperature T of both KL "
                               "terms (scaled by T^2, as in the paper's code).")
    alpha: float = Field(0.5, ge=0, description="Weight of the KL to the teacher in the min "
                         "steps (the paper's alpha).")
    gamma: float = Field(1.0, ge=0, description="Weight of the retain cross-entropy in the min "
                         "steps (the paper's gamma).")


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
               temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over examples."""
    import torch.nn.functional as F

    t = float(temperature)
    log_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_t = F.log_softmax(teacher_logits.float() / t, dim=-1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * t * t


def require_reference(run: RunContext, name: str) -> ModelAdapter:
    """``run.reference`` (the frozen original), or an error saying it is missing."""
    if run.reference is None:
        raise IncompatibleComponentError(
            f"strategy '{name}' distils from the original model, but no reference model was "
            "given (RunContext.reference); the pipeline provides it because the strategy "
            "declares needs 'reference_model'")
    return run.reference


def teacher_logits(run: RunContext, name: str, batch: dict[str, Any]) -> torch.Tensor:
    """The frozen reference model's logits on ``batch`` (no gradient)."""
    import torch

    ref = require_reference(run, name)
    with torch.no_grad():
        return logits_of(ref, batch, name)


def logits_of(adapter: ModelAdapter, batch: dict[str, Any], name: str) -> torch.Tensor:
    """``adapter.outputs(batch)["logits"]``, or an error saying the method needs them."""
    out = adapter.outputs(batch)
    logits = out.get("logits")
    if logits is None:
        raise IncompatibleComponentError(
            f"strategy '{name}' distils output distributions, so it needs a model adapter whose "
            f"outputs() include 'logits' over classes; '{adapter.name}' gives only "
            f"{sorted(out)}. Use a classification adapter, or a strategy that needs only a "
            "per-example loss (npo, negative_gradient)")
    return logits


class SCRUB(LossStrategy):
    """SCRUB (Kurmanji et al. 2023): alternate max steps on the forget set and min steps on retain.

    The teacher is the original model (the frozen ``reference_model``); the student is the
    adapter's model, starting from the same weights. With
    ``d(x) = T^2 * KL(p_teacher(x) || p_student(x))`` over temperature-``T`` softmaxes of
    the logits, each SCRUB epoch ``e`` runs

    1. if ``e < msteps``, a max phase: one pass over the FORGET set (batches of
       ``forget_batch_size``) minimising ``-mean d(x_f)``, i.e. moving the student away
       from the teacher on the forget set;
    2. a min phase: one pass over the RETAIN set minimising
       ``gamma * mean CE(x_r) + alpha * mean d(x_r)``, staying close to the teacher and
       correct on the data to keep.

    Why it overrides ``unlearn``: SCRUB is two losses over two different sets in an
    alternating schedule, so it runs each phase as its own call of the shared loop
    (:func:`erasus.training.train_loop`, with ``epoch_over`` the forget or the retain
    set), which keeps the loop's divergence guard, early stopping, progress and
    checkpoints. ``max_steps`` bounds the optimizer steps of all phases together, and
    the History numbers steps across phases. Each phase gets a fresh optimizer (the
    authors' code keeps one SGD optimizer across phases) and its own ``scheduler``
    cycle. Resuming: the checkpoint records its phase and the steps of the phases before
    it, so a killed run continues in the phase where it stopped. Not included: the
    authors' optional SWA weight averaging and label smoothing.

    Distillation needs class logits, so this runs on classification adapters
    (``outputs()`` with ``logits``) and raises otherwise. ``forget_loss`` logs the forget
    batch's mean cross-entropy in the max steps.
    """

    name = "scrub"
    modalities = ("classification",)
    needs = frozenset({"retain", "reference_model"})
    Params = SCRUBParams
    paper = KURMANJI_2023
    effect = "raise_forget_loss"
    epoch_over = "retain"
    pair_with = None

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._run: RunContext | None = None

    def schedule(self) -> list[tuple[str, int]]:
        """The phases in order: ``("max", epoch)`` or ``("min", epoch)``."""
        p: SCRUBParams = self.params  # type: ignore[assignment]
        out: list[tuple[str, int]] = []
        for epoch in range(p.epochs):
            if epoch < p.msteps:
                out.append(("max", epoch))
            out.append(("min", epoch))
        return out

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        p: SCRUBParams = self.params  # type: ignore[assignment]
        assert self._run is not None, "scrub: loss() runs inside unlearn()"
        batch = forget if forget is not None else retain
        out = adapter.outputs(batch)
        if out.get("logits") is None:
            logits_of(adapter, batch, self.name)  # raises, naming what is missing
        teacher = teacher_logits(self._run, self.name, batch)
        kl = distill_kl(out["logits"], teacher, p.temperature)
        ce = out["loss"].mean()
        if forget is not None:  # max step
            return {"loss": -kl, "forget_kl": kl, "forget_loss": ce}
        return {"loss": p.gamma * ce + p.alpha * kl, "retain_loss": ce, "retain_kl": kl}

    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        from erasus.strategy import History
        from erasus.training import train_loop

        p: SCRUBParams = self.params  # type: ignore[assignment]
        if data.forget is None or len(data.forget) == 0:
            raise IncompatibleComponentError(
                f"strategy '{self.name}' moves away from the original on the forget set, "
                "which is empty or missing")
        require_reference(run, self.name)
        self._run = run
        store = run.checkpoints
        saved_phase, prior = _saved_phase(store)
        history = History()
        try:
            for k, (mode, epoch) in enumerate(self.schedule()):
                if k < saved_phase:
                    continue  # finished before the checkpoint; its steps are in ``prior``
                if k == saved_phase:
                    history.steps = list(prior)
                done = len(history.steps)
                remaining = None if p.max_steps is None else p.max_steps - done
                if remaining is not None and remaining <= 0:
                    break
                phase = copy.copy(self)
                phase.epoch_over = "forget" if mode == "max" else "retain"
                phase.params = p.model_copy(update={
                    "epochs": 1, "max_steps": remaining,
                    "batch_size": p.forget_batch_size if mode == "max" else p.batch_size})
                phase_run = replace(
                    run, seed=int(run.seed) * 10_007 + epoch,
                    checkpoints=(_PhaseStore(store, k, history.steps) if store is not None
                                 else None),
                    on_step=_relay(run, done, epoch),
                    description=f"{run.description} (SCRUB {mode} {epoch + 1}/{p.epochs})")
                part = train_loop(phase, adapter, data, phase_run)
                if part.resumed_from is not None:
                    history.resumed_from = done + part.resumed_from
                history.steps += part.steps
                if part.stopped_early:
                    history.stopped_early = part.stopped_early
                    break
        finally:
            self._run = None
        adapter.model.eval()
        return history


def _relay(run: RunContext, offset: int, epoch: int) -> Any:
    """An ``on_step`` that numbers a phase's steps across phases and logs the SCRUB epoch."""
    def on_step(step: int, logged: dict[str, float]) -> None:
        logged["step"] = float(offset + step)
        logged["epoch"] = float(epoch)
        if run.on_step is not None:
            run.on_step(offset + step, logged)
    return on_step


def _saved_phase(store: CheckpointStore | None) -> tuple[int, list[dict[str, float]]]:
    """The phase the run's checkpoint belongs to and the steps of the phases before it."""
    if store is None or not store.exists:
        return -1, []
    state = json.loads((store.directory / "state.json").read_text())
    return int(state.get("scrub_phase", -1)), list(state.get("scrub_prior", []))


class _PhaseStore:
    """The run's checkpoint store as one phase sees it: it exists only when the checkpoint
    was written by this phase, and a checkpoint written here records the phase."""

    def __init__(self, store: CheckpointStore, phase: int,
                 prior: list[dict[str, float]]) -> None:
        self._store = store
        self._phase = phase
        self._prior = list(prior)

    @property
    def exists(self) -> bool:
        return _saved_phase(self._store)[0] == self._phase

    def load(self, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
        return self._store.load(model, optimizer, scheduler)

    def save(self, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]) -> None:
        self._store.save(model, optimizer, scheduler,
                         {**state, "scrub_phase": self._phase, "scrub_prior": self._prior})
