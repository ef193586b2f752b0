"""Seeded batch samplers: forget/retain pairing and class-balanced batches.

- :class:`ForgetRetainSampler` yields ``(forget batch indices, retain batch indices)``
  pairs in exactly the order the shared training loop (:func:`erasus.training.train_loop`)
  draws them for a strategy that epochs over one set and pairs the other, so custom loops
  and analyses see the batches a loss-based strategy saw.
- :class:`ClassBalancedSampler` is a ``batch_sampler`` for ``torch.utils.data.DataLoader``
  whose batches hold (to one example) as many examples of every class.
- :func:`balanced_weights` gives per-example weights for
  ``torch.utils.data.WeightedRandomSampler`` (each class drawn equally often on average).

All randomness comes from generators seeded by ``seed`` (and the epoch): the same seed
gives the same batches in every process.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ClassBalancedSampler", "ForgetRetainSampler", "balanced_weights"]

#: Offset of the paired set's seed in the shared loop (see ``erasus.training``).
PAIRED_SEED_OFFSET = 7919


class ForgetRetainSampler:
    """Pairs forget and retain batches: ``(forget_indices, retain_indices)`` per step.

    An epoch is one pass over the ``primary`` set (``"forget"`` by default) in batches of
    ``batch_size``, shuffled by ``(seed, epoch)``; the other set is drawn in its own shuffle
    (seed ``seed + 7919``) alongside, batch ``j`` with batch ``j`` of the other set,
    wrapping around when it has fewer batches. This is the shared loop's pairing, so the
    sampler reproduces the batches of any loss-based strategy run with the same seed.

    Args:
        n_forget: size of the forget set. n_retain: size of the retain set.
        batch_size: examples per batch of each set.
        seed: the run seed. epochs: passes over the primary set.
        primary: the set an epoch passes over (``"forget"`` or ``"retain"``).
        min_batch_size: a last batch smaller than this joins the one before.
    """

    def __init__(self, n_forget: int, n_retain: int, *, batch_size: int, seed: int = 0,
                 epochs: int = 1, primary: Literal["forget", "retain"] = "forget",
                 min_batch_size: int = 1) -> None:
        if n_forget <= 0 or n_retain <= 0:
            raise ValueError(f"both sets must be non-empty (forget {n_forget}, retain "
                             f"{n_retain})")
        if batch_size < 1 or epochs < 0:
            raise ValueError("batch_size must be >= 1 and epochs >= 0")
        if primary not in ("forget", "retain"):
            raise ValueError(f"primary must be 'forget' or 'retain', got {primary!r}")
        self.n_forget, self.n_retain = int(n_forget), int(n_retain)
        self.batch_size, self.seed, self.epochs = int(batch_size), int(seed), int(epochs)
        self.primary, self.min_batch_size = primary, int(min_batch_size)

    def epoch(self, epoch: int) -> list[tuple[list[int], list[int]]]:
        """The ``(forget, retain)`` index batches of one epoch."""
        from erasus.training import epoch_batches

        n_primary, n_paired = ((self.n_forget, self.n_retain) if self.primary == "forget"
                               else (self.n_retain, self.n_forget))
        order = epoch_batches(n_primary, self.batch_size, self.seed, epoch,
                              self.min_batch_size)
        paired = epoch_batches(n_paired, self.batch_size, self.seed + PAIRED_SEED_OFFSET,
                               epoch, self.min_batch_size)
        pairs = [(order[j], paired[j % len(paired)]) for j in range(len(order))]
        if self.primary == "retain":
            pairs = [(f, r) for r, f in pairs]
        return pairs

    def __iter__(self) -> Iterator[tuple[list[int], list[int]]]:
        for epoch in range(self.epochs):
            yield from self.epoch(epoch)

    def __len__(self) -> int:
        from erasus.data import chunk

        n_primary = self.n_forget if self.primary == "forget" else self.n_retain
        return self.epochs * len(chunk(list(range(n_primary)), self.batch_size,
                                       self.min_batch_size))


class ClassBalancedSampler:
    """A ``batch_sampler`` whose batches hold every class (nearly) equally often.

    Each batch takes ``batch_size // C`` examples of each of the ``C`` classes, and the
    ``batch_size % C`` remaining slots go to classes drawn at random for that batch. Every
    class is read in its own shuffled order, reshuffled when used up, so rare classes are
    repeated (oversampled) and frequent ones are undersampled. An epoch has
    ``num_batches`` batches (default ``ceil(n / batch_size)``); call :meth:`set_epoch` to
    draw a new order, as with ``DistributedSampler``.

    Args:
        labels: the class of every example (ints).
        batch_size: examples per batch (at least the number of classes to cover them all).
        seed: seed of the shuffles. num_batches: batches per epoch.
    """

    def __init__(self, labels: Any, *, batch_size: int, seed: int = 0,
                 num_batches: int | None = None) -> None:
        import numpy as np

        y = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(y) == 0:
            raise ValueError("ClassBalancedSampler needs at least one labelled example")
        self.classes = np.unique(y)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.members = [np.flatnonzero(y == c) for c in self.classes]
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.num_batches = int(num_batches) if num_batches is not None else \
            math.ceil(len(y) / self.batch_size)
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffles of ``epoch`` on the next iteration."""
        self._epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        import numpy as np

        rng = np.random.default_rng([self.seed, self._epoch])
        n_classes = len(self.classes)
        orders = [rng.permutation(m) for m in self.members]
        cursor = [0] * n_classes
        base, extra = divmod(self.batch_size, n_classes)
        for _ in range(self.num_batches):
            counts = np.full(n_classes, base)
            if extra:
                counts[rng.choice(n_classes, size=extra, replace=False)] += 1
            batch: list[int] = []
            for c in range(n_classes):
                for _ in range(int(counts[c])):
                    if cursor[c] == len(orders[c]):
                        orders[c], cursor[c] = rng.permutation(self.members[c]), 0
                    batch.append(int(orders[c][cursor[c]]))
                    cursor[c] += 1
            yield [batch[i] for i in rng.permutation(len(batch))]

    def __len__(self) -> int:
        return self.num_batches


def balanced_weights(labels: Any) -> np.ndarray:
    """Per-example weights ``1 / count(class)``, normalised to sum to 1.

    With ``torch.utils.data.WeightedRandomSampler(weights, num_samples, generator=g)``
    every class is drawn with the same probability.
    """
    import numpy as np

    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    return weights / weights.sum()
