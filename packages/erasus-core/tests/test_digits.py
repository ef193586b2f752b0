"""The bundled digits data set: splits for random and class-wise forgetting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from erasus.builtin.datasets.digits import Digits
from pydantic import ValidationError
from torch.utils.data.dataloader import default_collate


def stacked(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = default_collate([dataset[i] for i in range(len(dataset))])
    return x, y


@pytest.fixture(scope="module")
def random_splits():
    return Digits().load(seed=0)


def test_random_forgetting_partitions_the_training_set(random_splits):
    s = random_splits
    n = len(s.train)
    assert n + len(s.test) == 1797
    assert len(s.test) == pytest.approx(0.25 * 1797, abs=1)
    assert len(s.forget) == round(0.1 * n)
    assert len(s.forget) + len(s.retain) == n
    idx = s.forget_indices
    assert idx == sorted(set(idx)) and 0 <= idx[0] and idx[-1] < n
    assert sorted(idx + list(s.retain.indices)) == list(range(n))
    assert list(s.forget.indices) == idx and s.forget.dataset is s.train

    x_train, y_train = stacked(s.train)
    x_forget, y_forget = stacked(s.forget)
    assert torch.equal(x_forget, x_train[idx]) and torch.equal(y_forget, y_train[idx])


def test_items_are_scaled_images_and_class_labels(random_splits):
    x, y = stacked(random_splits.train)
    assert x.dtype == torch.float32 and tuple(x.shape[1:]) == (1, 8, 8)
    assert y.dtype == torch.long
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert sorted(y.unique().tolist()) == list(range(10))
    info = random_splits.info
    assert (info.modality, info.num_classes, info.input_shape) == ("classification", 10,
                                                                    (1, 8, 8))


def test_test_split_is_stratified_and_independent_of_the_run_seed(random_splits):
    _, y_test = stacked(random_splits.test)
    _, y_train = stacked(random_splits.train)
    counts = np.bincount(y_test.numpy(), minlength=10)
    share = counts / (counts + np.bincount(y_train.numpy(), minlength=10))
    assert np.all(np.abs(share - 0.25) < 0.01)

    other = Digits().load(seed=7)
    assert torch.equal(stacked(other.test)[0], stacked(random_splits.test)[0])
    assert other.forget_indices != random_splits.forget_indices
    resplit = Digits(split_seed=1).load(seed=0)
    assert not torch.equal(stacked(resplit.test)[0], stacked(random_splits.test)[0])


def test_the_same_seed_gives_the_same_splits(random_splits):
    again = Digits().load(seed=0)
    assert again.forget_indices == random_splits.forget_indices
    assert torch.equal(stacked(again.train)[0], stacked(random_splits.train)[0])


def test_forget_fraction_is_honoured():
    s = Digits(forget={"fraction": 0.25}).load(seed=1)
    assert len(s.forget) == round(0.25 * len(s.train))


def test_class_wise_forgetting():
    s = Digits(forget={"kind": "class", "class_id": 3}).load(seed=0)
    _, y_train = stacked(s.train)
    _, y_forget = stacked(s.forget)
    _, y_retain = stacked(s.retain)
    _, y_test = stacked(s.test)
    _, y_gone = stacked(s.extra["test_forgotten_class"])
    assert bool((y_forget == 3).all())
    assert len(s.forget) == int((y_train == 3).sum())
    assert s.forget_indices == torch.nonzero(y_train == 3).flatten().tolist()
    assert 3 not in y_retain.tolist() and len(s.retain) + len(s.forget) == len(s.train)
    assert 3 not in y_test.tolist()
    assert bool((y_gone == 3).all()) and len(y_gone) > 0
    assert len(s.test) + len(y_gone) == 1797 - len(s.train)
    assert s.get("test_forgotten_class") is s.extra["test_forgotten_class"]


def test_invalid_parameters_are_rejected():
    with pytest.raises(ValidationError):
        Digits(forget={"kind": "sample"})
    with pytest.raises(ValidationError):
        Digits(forget={"class_id": 10})
    with pytest.raises(ValidationError):
        Digits(forget={"fraction": 1.5})
    with pytest.raises(ValidationError):
        Digits(test_fraction=0.25, shuffle=True)
