"""Bad teaching: distil a competent teacher on retain data and an incompetent one on forget data."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.builtin.strategies.scrub import logits_of, require_reference
from erasus.components import Paper
from erasus.strategy import LoopParams, LossStrategy

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import History, RunContext, UnlearnData

__all__ = ["BadTeacher", "BadTeacherParams"]


class BadTeacherParams(LoopParams):
    """Parameters of bad-teacher unlearning (defaults suit the digits benchmark)."""

    epochs: int = Field(1, ge=0, description="Passes over the mixed set (the forget set plus "
                        "the retain share).")
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("adam", description="Optimizer.")
    temperature: float = Field(1.0, gt=0, description="Temperature T of the softmaxes that "
                               "are compared (the paper uses 1).")
    retain_fraction: float = Field(
        0.3, gt=0, le=1, description="Share of the retain set mixed with the forget set, drawn "
        "once with the run seed (the paper uses 30%).")


class BadTeacher(LossStrategy):
    """Bad teaching (Chundawat et al. 2023): a good teacher on retain, a random one on forget.

    Two teachers: the competent one is the original model (the frozen
    ``reference_model``); the incompetent one is a copy of it re-initialised at random
    (``reset_parameters`` under a generator seeded by the run seed), the untrained
    network of the paper. The training set is the forget set plus a random
    ``retain_fraction`` of the retain set (drawn once with the run seed), shuffled
    together; an epoch is one pass over it. For every example the student minimises
    ``KL(softmax(t(x) / T) || softmax(s(x) / T))`` with ``t`` the incompetent teacher
    for forget examples and the competent one for retain examples, averaged over the
    batch (the paper's loss; here the KL is summed over classes and averaged over
    examples). The student so loses on the forget set exactly the knowledge a network
    that never learnt it would have, while keeping the original's outputs elsewhere.

    Needs class logits (``outputs()`` with ``logits``): classification adapters.
    ``forget_kl``/``retain_kl`` log the two KL terms and ``forget_loss`` the forget
    examples' mean cross-entropy (in batches that hold some).
    """

    name = "bad_teacher"
    modalities = ("classification",)
    needs = frozenset({"retain", "reference_model"})
    Params = BadTeacherParams
    paper = Paper(
        title="Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks Using an "
        "Incompetent Teacher",
        authors="Vikram S. Chundawat, Ayush K. Tarun, Murari Mandal, Mohan Kankanhalli",
        year=2023,
        url="https://arxiv.org/abs/2205.08096",
        venue="AAAI",
    )
    effect = "raise_forget_loss"
    epoch_over = "retain"  # the mixed set is passed to the loop as the retain set
    pair_with = None

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        #: The two teachers while unlearning (set by prepare(), dropped afterwards).
        self.competent: ModelAdapter | None = None
        self.incompetent: ModelAdapter | None = None
        self._n_forget = 0
        #: The mixed training set: forget examples first, then the chosen retain ones.
        self.mixed: Any = None

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        import torch
        from torch.utils.data import ConcatDataset

        from erasus.data import subset

        p: BadTeacherParams = self.params  # type: ignore[assignment]
        good = require_reference(run, self.name)
        bad = good.clone()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(run.seed))
            bad.reset_parameters()
        for param in bad.model.parameters():
            param.requires_grad_(False)
        bad.model.eval()
        retain = data.retain if data.retain is not None else []
        g = torch.Generator().manual_seed(int(run.seed) + 1)
        count = max(1, round(p.retain_fraction * len(retain))) if len(retain) else 0
        chosen = sorted(torch.randperm(len(retain), generator=g)[:count].tolist())
        parts = [data.forget] + ([subset(retain, chosen)] if chosen else [])
        self.competent, self.incompetent = good, bad
        self._n_forget = len(data.forget)
        self.mixed = ConcatDataset(parts)

    def unlearn(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> History:
        from erasus.errors import IncompatibleComponentError
        from erasus.training import train_loop

        if data.forget is None or len(data.forget) == 0:
            raise IncompatibleComponentError(
                f"strategy '{self.name}' needs a non-empty forget set")
        self.prepare(adapter, data, run)
        try:
            return train_loop(self, adapter, replace(data, retain=self.mixed), run)
        finally:
            self.competent = self.incompetent = None

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        import torch
        import torch.nn.functional as F

        if self.competent is None or self.incompetent is None:
            raise RuntimeError("bad_teacher: prepare() must run before loss()")
        p: BadTeacherParams = self.params  # type: ignore[assignment]
        batch = retain
        is_forget = batch["index"] < self._n_forget
        out = adapter.outputs(batch)
        student = out.get("logits")
        if student is None:
            logits_of(adapter, batch, self.name)  # raises, naming what is missing
        with torch.no_grad():
            good = logits_of(self.competent, batch, self.name)
            bad = logits_of(self.incompetent, batch, self.name)
        teacher = torch.where(is_forget.unsqueeze(1), bad, good)
        t = p.temperature
        log_s = F.log_softmax(student.float() / t, dim=-1)
        log_t = F.log_softmax(teacher.float() / t, dim=-1)
        per_example = F.kl_div(log_s, log_t, reduction="none", log_target=True).sum(dim=-1)
        parts = {"loss": per_example.mean()}
        if bool(is_forget.any()):
            parts["forget_kl"] = per_example[is_forget].mean()
            parts["forget_loss"] = out["loss"][is_forget].detach().mean()
        if bool((~is_forget).any()):
            parts["retain_kl"] = per_example[~is_forget].mean()
        return parts
