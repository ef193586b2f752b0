"""Random relabelling: train the forget set towards fixed random wrong labels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.strategy import LoopParams, LossStrategy

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import RunContext, UnlearnData

__all__ = ["RandomLabel", "RandomLabelParams"]


class RandomLabelParams(LoopParams):
    """Parameters of random relabelling."""

    epochs: int = Field(3, ge=0, description="Passes over the forget set.")
    lr: float = Field(5e-4, gt=0, description="Learning rate.")
    retain_weight: float = Field(
        1.0, ge=0, description="Weight of the cross-entropy on the paired retain batch.")


class RandomLabel(LossStrategy):
    """Fine-tune the forget set on fixed random wrong labels, alongside the retain set.

    Before training, every forget example gets ONE random label different from its true
    label, drawn uniformly among the other classes with a generator seeded by the run seed
    and keyed by the example's position in the forget set (``batch["index"]``), so the
    relabelling is the same in every epoch and in a resumed run. Each step minimises
    ``CE(forget, random labels) + retain_weight * CE(paired retain batch)``.

    Needs a classifier adapter (``labels``, ``with_labels`` and ``num_classes``).
    """

    name = "random_label"
    modalities = ("classification",)
    needs = frozenset({"retain"})
    Params = RandomLabelParams
    paper = Paper(
        title="Amnesiac Machine Learning",
        authors="Laura Graves, Vineel Nagisetty, Vijay Ganesh",
        year=2021,
        url="https://arxiv.org/abs/2010.10981",
        venue="AAAI",
    )
    effect = "raise_forget_loss"
    epoch_over = "forget"
    pair_with = "retain"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        #: The fixed wrong label of each forget example (by position), set by prepare().
        self.random_labels: torch.Tensor | None = None
        self.true_labels: torch.Tensor | None = None

    @staticmethod
    def _num_classes(adapter: ModelAdapter) -> int:
        missing = [a for a in ("labels", "with_labels") if not callable(getattr(adapter, a, None))]
        num_classes = None
        if not missing:
            try:
                num_classes = int(adapter.num_classes)  # type: ignore[attr-defined]
            except (AttributeError, NotImplementedError, IncompatibleComponentError,
                    TypeError, ValueError):
                missing.append("num_classes")
        if missing or num_classes is None or num_classes < 2:
            what = ", ".join(missing) or "num_classes >= 2"
            raise IncompatibleComponentError(
                f"strategy 'random_label' relabels examples, so it needs a classification "
                f"model adapter (labels, with_labels and num_classes); model '{adapter.name}' "
                f"(modalities {', '.join(adapter.modalities)}) lacks {what}. Use it with the "
                "'classifier' adapter, or choose gradient_ascent or gradient_difference, "
                "which only need a per-example loss.")
        return num_classes

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        import torch
        from torch.utils.data.dataloader import default_collate

        num_classes = self._num_classes(adapter)
        collate = data.collate_fn or default_collate
        forget = data.forget
        true = []
        with torch.no_grad():
            for start in range(0, len(forget), 256):
                items = [forget[i] for i in range(start, min(start + 256, len(forget)))]
                batch = adapter.prepare_batch(collate(items))
                true.append(adapter.labels(batch).detach().long().cpu())  # type: ignore[attr-defined]
        true_labels = torch.cat(true) if true else torch.zeros(0, dtype=torch.long)
        g = torch.Generator().manual_seed(int(run.seed))
        # An offset in 1..C-1 modulo C is uniform over the C-1 wrong classes.
        offset = torch.randint(1, num_classes, (len(true_labels),), generator=g)
        self.true_labels = true_labels
        self.random_labels = (true_labels + offset) % num_classes

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        if self.random_labels is None:
            raise RuntimeError("random_label: prepare() must run before loss()")
        p: RandomLabelParams = self.params  # type: ignore[assignment]
        index = forget["index"].to(self.random_labels.device)
        labels = self.random_labels[index].to(adapter.device)
        relabelled = adapter.with_labels(forget, labels)  # type: ignore[attr-defined]
        forget_loss = adapter.per_example_loss(relabelled).mean()
        retain_loss = adapter.per_example_loss(retain).mean()
        total = forget_loss + p.retain_weight * retain_loss
        return {"loss": total, "forget_loss": forget_loss, "retain_loss": retain_loss}
