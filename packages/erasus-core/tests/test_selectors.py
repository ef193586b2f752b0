"""The built-in selectors: full and random."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from erasus.builtin.selectors.full import FullSelector
from erasus.builtin.selectors.random import RandomSelector
from erasus.errors import IncompatibleComponentError
from erasus.selection import resolve_budget
from pydantic import ValidationError
from torch.utils.data import DataLoader, TensorDataset


@pytest.fixture
def forget():
    return TensorDataset(torch.randn(40, 3), torch.arange(40) % 4)


@pytest.mark.parametrize("budget, expected", [(0.25, 10), (0.1, 4), (7, 7), (1.0, 40),
                                              (100, 40)])
def test_random_selects_unique_sorted_valid_positions_of_the_budget_size(forget, budget,
                                                                          expected):
    selection = RandomSelector(budget=budget).select(None, forget, seed=3)
    indices = selection.indices
    assert len(indices) == expected == resolve_budget(budget, len(forget))
    assert len(np.unique(indices)) == len(indices)
    assert np.all(np.diff(indices) > 0)
    assert indices.min() >= 0 and indices.max() < len(forget)
    assert np.issubdtype(indices.dtype, np.integer)
    assert selection.scores.shape == (expected,)


def test_random_is_determined_by_the_seed_alone(forget):
    selector = RandomSelector(budget=0.25)
    a = selector.select(None, forget, seed=0).indices
    b = RandomSelector(budget=0.25).select(None, forget, seed=0).indices
    c = selector.select(None, forget, seed=1).indices
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # a shuffling loader around the same data changes nothing: positions are in the dataset
    loader = DataLoader(forget, batch_size=8, shuffle=True,
                        generator=torch.Generator().manual_seed(99))
    assert np.array_equal(selector.select(None, loader, seed=0).indices, a)


def test_random_covers_all_positions_across_seeds(forget):
    seen = set()
    for seed in range(100):
        seen.update(RandomSelector(budget=4).select(None, forget, seed=seed).indices.tolist())
    assert seen == set(range(40))  # uniform over the set, not stuck on a prefix


def test_full_selects_everything(forget):
    selection = FullSelector().select(None, forget, seed=5)
    assert np.array_equal(selection.indices, np.arange(40))
    assert np.array_equal(selection.scores, np.ones(40))
    assert selection.to_dict()["indices"] == list(range(40))
    # a count at least the set's size is the whole set too
    assert len(FullSelector(budget=40).select(None, forget).indices) == 40
    assert len(FullSelector(budget=1000).select(None, forget).indices) == 40


def test_full_refuses_a_fractional_budget():
    with pytest.raises(ValidationError, match="random"):
        FullSelector(budget=0.5)


def test_full_refuses_a_count_below_the_set_size(forget):
    with pytest.raises(IncompatibleComponentError, match="random"):
        FullSelector(budget=10).select(None, forget)
