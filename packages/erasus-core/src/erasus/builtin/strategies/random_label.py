"""Random relabelling: train the forget set towards fixed random wrong labels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.builtin._papers import GRAVES_2021
from erasus.strategy import LoopParams, LossStrategy

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import RunContext, UnlearnData

__all__ = ["RandomLabel", "RandomLabelParams", "draw_random_labels", "relabelled_loss"]


class RandomLabelParams(LoopParams):
    """Parameters of random relabelling."""

    epochs: int = Field(3, ge=0, description="Passes over the forget set.")
    lr: float = Field(5e-4, gt=0, description="Learning rate.")
    retain_weight: float = Field(
        1.0, ge=0, description="Weight of the cross-entropy on the paired retain batch.")


def draw_random_labels(n: int, num_classes: int, seed: int, *,
                       true_labels: torch.Tensor | None = None) -> torch.Tensor:
    """One fixed random label per example (by position), from a generator seeded by ``seed``.

    Uniform over all ``num_classes`` classes, or, given ``true_labels``, uniform over the
    ``num_classes - 1`` classes other than each example's true label.
    """
    import torch

    g = torch.Generator().manual_seed(int(seed))
    if true_labels is None:
        return torch.randint(0, num_classes, (n,), generator=g)
    # An offset in 1..C-1 modulo C is uniform over the C-1 wrong classes.
    offset = torch.randint(1, num_classes, (n,), generator=g)
    return (true_labels + offset) % num_classes


def relabelled_loss(adapter: ModelAdapter, forget: dict[str, Any], retain: dict[str, Any],
                    random_labels: torch.Tensor, retain_weight: float
                    ) -> dict[str, torch.Tensor]:
    """``CE(forget batch, its random labels) + retain_weight * CE(retain batch)``, the
    labels looked up by the batch's positions in the forget set (``forget["index"]``)."""
    index = forget["index"].to(random_labels.device)
    labels = random_labels[index].to(adapter.device)
    relabelled = adapter.with_labels(forget, labels)  # type: ignore[attr-defined]
    forget_loss = adapter.per_example_loss(relabelled).mean()
    retain_loss = adapter.per_example_loss(retain).mean()
    total = forget_loss + retain_weight * retain_loss
    return {"loss": total, "forget_loss": forget_loss, "retain_loss": retain_loss}


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
    paper = GRAVES_2021
    effect = "raise_forget_loss"
    epoch_over = "forget"
    pair_with = "retain"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        #: The fixed wrong label of each forget example (by position), set by prepare().
        self.random_labels: torch.Tensor | None = None
        self.true_labels: torch.Tensor | None = None

    def prepare(self, adapter: ModelAdapter, data: UnlearnData, run: RunContext) -> None:
        import torch
        from torch.utils.data.dataloader import default_collate

        from erasus.builtin.strategies._importance import classifier_classes

        num_classes = classifier_classes(adapter, self.name, "relabels examples")
        collate = data.collate_fn or default_collate
        forget = data.forget
        true = []
        with torch.no_grad():
            for start in range(0, len(forget), 256):
                items = [forget[i] for i in range(start, min(start + 256, len(forget)))]
                batch = adapter.prepare_batch(collate(items))
                true.append(adapter.labels(batch).detach().long().cpu())  # type: ignore[attr-defined]
        true_labels = torch.cat(true) if true else torch.zeros(0, dtype=torch.long)
        self.true_labels = true_labels
        self.random_labels = draw_random_labels(len(true_labels), num_classes, run.seed,
                                                true_labels=true_labels)

    def loss(self, adapter: ModelAdapter, *, forget: dict[str, Any] | None,
             retain: dict[str, Any] | None) -> dict[str, torch.Tensor]:
        if self.random_labels is None:
            raise RuntimeError("random_label: prepare() must run before loss()")
        p: RandomLabelParams = self.params  # type: ignore[assignment]
        return relabelled_loss(adapter, forget, retain,  # type: ignore[arg-type]
                               self.random_labels, p.retain_weight)
