"""Data plumbing shared by every component: splits, providers, index-keeping loaders.

Selected indices always refer to positions in the dataset that was passed in, whatever
loader wrapped it: :func:`unwrap` takes the dataset (and collate function) out of a
``DataLoader`` and :func:`index_loader` builds Erasus's own seeded loader that yields
``(indices, batch)`` pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from erasus.components import Component, Params

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset

__all__ = [
    "DataInfo",
    "DatasetParams",
    "DatasetProvider",
    "Splits",
    "chunk",
    "forget_splits",
    "index_loader",
    "subset",
    "unwrap",
]


@dataclass
class DataInfo:
    """What a model needs to know about the data to be built for it."""

    modality: str
    num_classes: int | None = None
    input_shape: tuple[int, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Splits:
    """The named splits of a benchmark.

    ``forget`` and ``retain`` partition ``train``; ``forget_indices`` are the positions of
    the forget examples in ``train``. ``test`` is held-out data (for class-wise forgetting,
    without the forgotten class). ``extra`` holds further named splits.
    """

    train: Dataset
    forget: Dataset
    retain: Dataset
    test: Dataset
    info: DataInfo
    forget_indices: list[int] = field(default_factory=list)
    extra: dict[str, Dataset] = field(default_factory=dict)
    collate_fn: Any = None

    def get(self, name: str) -> Dataset:
        if name in ("train", "forget", "retain", "test"):
            return getattr(self, name)
        if name in self.extra:
            return self.extra[name]
        raise KeyError(f"no split named '{name}'; splits: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return ["train", "forget", "retain", "test", *self.extra]


class DatasetParams(Params):
    """Parameters every dataset provider accepts."""


class DatasetProvider(Component):
    """Base class of dataset providers: ``load(seed=...)`` returns the :class:`Splits`."""

    Params: ClassVar[type[Params]] = DatasetParams

    def load(self, *, seed: int) -> Splits:
        raise NotImplementedError


def forget_splits(train: Any, test: Any, *, info: DataInfo, seed: int,
                  fraction: float | None = None, groups: tuple[Any, Any] | None = None,
                  group: str = "class", collate_fn: Any = None) -> Splits:
    """The splits of random or group forgetting, the way every bundled benchmark makes them.

    Random forgetting (``groups`` is None): ``max(1, round(fraction * n))`` training
    examples drawn with ``numpy.random.default_rng(seed)``; the test set stays whole. Group
    forgetting (``groups``: boolean masks over train and test of one class, speaker or
    concept): the group's training examples are forgotten, ``test`` leaves the group out
    and the extra split ``test_forgotten_<group>`` holds it.
    """
    import numpy as np
    from torch.utils.data import Subset

    n = len(train)
    extra: dict[str, Any] = {}
    if groups is None:
        if fraction is None:
            raise ValueError("forget_splits needs a fraction or group masks")
        k = max(1, round(fraction * n))
        forget_idx = np.sort(np.random.default_rng(int(seed)).choice(n, size=k,
                                                                      replace=False))
        test_idx = np.arange(len(test))
    else:
        forget_idx = np.flatnonzero(np.asarray(groups[0], dtype=bool))
        in_test = np.asarray(groups[1], dtype=bool)
        test_idx = np.flatnonzero(~in_test)
        extra[f"test_forgotten_{group}"] = Subset(test, np.flatnonzero(in_test).tolist())
    mask = np.ones(n, dtype=bool)
    mask[forget_idx] = False
    forget_indices = [int(i) for i in forget_idx]
    return Splits(train=train, forget=Subset(train, forget_indices),
                  retain=Subset(train, np.flatnonzero(mask).tolist()),
                  test=Subset(test, test_idx.tolist()), info=info,
                  forget_indices=forget_indices, extra=extra, collate_fn=collate_fn)


def unwrap(data: Any) -> tuple[Any, Any, int | None]:
    """``(dataset, collate_fn, batch_size)`` from a Dataset or a DataLoader."""
    from torch.utils.data import DataLoader

    if isinstance(data, DataLoader):
        return data.dataset, data.collate_fn, data.batch_size
    return data, None, None


def subset(dataset: Any, indices: Any) -> Any:
    """A ``torch.utils.data.Subset`` of ``dataset`` at ``indices`` (a list of ints)."""
    from torch.utils.data import Subset

    return Subset(dataset, [int(i) for i in indices])


class _Indexed:
    """Wraps a dataset so items come with their own index: ``(i, dataset[i])``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[int, Any]:
        return i, self.dataset[i]


def _collate_indexed(collate_fn: Any) -> Any:
    def collate(items: list[tuple[int, Any]]) -> tuple[torch.Tensor, Any]:
        import torch

        indices = torch.tensor([i for i, _ in items], dtype=torch.long)
        return indices, collate_fn([item for _, item in items])

    return collate


def chunk(order: list[int], batch_size: int, min_size: int = 1) -> list[list[int]]:
    """Split ``order`` into batches; a last batch under ``min_size`` joins the one before.

    Adapters whose per-example loss needs a batch partner (contrastive models) declare
    ``min_batch_size = 2``, so no loop ever hands them a batch of one.
    """
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < min_size:
        last = batches.pop()
        batches[-1] = batches[-1] + last
    return batches


class _Batches:
    """Index batches over ``n`` examples: a new shuffle per pass when given a generator."""

    def __init__(self, n: int, batch_size: int, min_size: int, generator: Any) -> None:
        self.n, self.batch_size, self.min_size = n, batch_size, min_size
        self.generator = generator

    def __iter__(self) -> Any:
        import torch

        if self.generator is None:
            order = list(range(self.n))
        else:
            # One draw first, as a shuffled torch DataLoader takes its base seed from the
            # generator: the order is the one DataLoader(shuffle=True, generator=g) gives.
            torch.empty((), dtype=torch.int64).random_(generator=self.generator)
            order = torch.randperm(self.n, generator=self.generator).tolist()
        return iter(chunk(order, self.batch_size, self.min_size))

    def __len__(self) -> int:
        return len(chunk(list(range(self.n)), self.batch_size, self.min_size))


def index_loader(dataset: Any, *, batch_size: int, shuffle: bool = False, seed: int = 0,
                 collate_fn: Any = None, min_batch_size: int = 1) -> Any:
    """A DataLoader over ``dataset`` yielding ``(indices, batch)``, reproducibly shuffled.

    The shuffle order depends only on ``seed``, so a resumed run sees the same batches; a
    last batch smaller than ``min_batch_size`` is merged into the one before it.
    """
    import torch
    from torch.utils.data import DataLoader
    from torch.utils.data.dataloader import default_collate

    generator = torch.Generator().manual_seed(int(seed)) if shuffle else None
    return DataLoader(
        _Indexed(dataset),
        batch_sampler=_Batches(len(dataset), batch_size, min_batch_size, generator),
        collate_fn=_collate_indexed(collate_fn or default_collate),
        num_workers=0,
    )
