"""SISA partitioning: the training set split into shards, each shard into slices.

Bourtoule et al. (2021) train one model per disjoint shard of the training data, each
incrementally over the shard's slices. :func:`sisa_partition` makes that partition from
the training-set size and a seed alone (so it is reproducible without storing the data):
a permutation of the training indices drawn with ``numpy.random.default_rng(seed)`` is cut
into ``shards`` near-equal consecutive parts, and each part, in its permuted order, into
``slices`` near-equal consecutive slices (``numpy.array_split`` sizes: the first parts are
one longer when the sizes do not divide).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["SisaPartition", "sisa_partition"]


@dataclass(frozen=True)
class SisaPartition:
    """Shard and slice membership of every training index.

    ``assignment[k][r]`` is the list of training indices in slice ``r`` of shard ``k``
    (in the permuted order they were drawn in).
    """

    n: int
    shards: int
    slices: int
    seed: int
    assignment: tuple[tuple[tuple[int, ...], ...], ...]

    def locate(self, index: int) -> tuple[int, int]:
        """``(shard, slice)`` of a training index."""
        return self._where()[int(index)]

    def _where(self) -> dict[int, tuple[int, int]]:
        cached = self.__dict__.get("_where_cache")
        if cached is None:
            cached = {i: (k, r) for k, shard in enumerate(self.assignment)
                      for r, part in enumerate(shard) for i in part}
            object.__setattr__(self, "_where_cache", cached)
        return cached

    def shard(self, k: int) -> list[int]:
        """Every training index of shard ``k``, slice by slice."""
        return [i for part in self.assignment[k] for i in part]

    def upto(self, k: int, r: int, removed: Iterable[int] = ()) -> list[int]:
        """The training indices of slices ``0..r`` of shard ``k`` (what the shard model has
        seen after slice ``r``), without ``removed``."""
        gone = set(int(i) for i in removed)
        return [i for part in self.assignment[k][:r + 1] for i in part if i not in gone]

    def affected(self, indices: Iterable[int]) -> dict[int, int]:
        """``{shard: first slice holding any of indices}`` for the shards they touch."""
        out: dict[int, int] = {}
        for i in indices:
            k, r = self.locate(int(i))
            out[k] = min(r, out.get(k, r))
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "shards": self.shards, "slices": self.slices, "seed": self.seed,
                "assignment": [[list(part) for part in shard] for shard in self.assignment]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SisaPartition:
        return cls(n=int(data["n"]), shards=int(data["shards"]), slices=int(data["slices"]),
                   seed=int(data["seed"]),
                   assignment=tuple(tuple(tuple(int(i) for i in part) for part in shard)
                                    for shard in data["assignment"]))


def sisa_partition(n: int, shards: int, slices: int, seed: int) -> SisaPartition:
    """The SISA partition of ``n`` training indices (see the module docstring).

    Raises:
        ValueError: if there are fewer training examples than shards x slices.
    """
    import numpy as np

    if shards < 1 or slices < 1:
        raise ValueError(f"shards and slices must be >= 1 (got {shards}, {slices})")
    if n < shards * slices:
        raise ValueError(f"{n} training examples cannot fill {shards} shards x {slices} "
                         "slices; use fewer shards or slices")
    perm = np.random.default_rng(int(seed)).permutation(int(n))
    assignment = tuple(
        tuple(tuple(int(i) for i in part) for part in np.array_split(shard, slices))
        for shard in np.array_split(perm, shards))
    return SisaPartition(n=int(n), shards=int(shards), slices=int(slices), seed=int(seed),
                         assignment=assignment)
