"""Data utilities: splits (random, class-wise, per-entity), samplers and transforms."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from erasus.data import DataInfo
from erasus.samplers import ClassBalancedSampler, ForgetRetainSampler, balanced_weights
from erasus.splits import (
    class_forget,
    entity_forget,
    labels_of,
    random_forget,
    train_test_indices,
)
from erasus.transforms import (
    Compose,
    GaussianNoise,
    Normalize,
    RandomShift,
    TransformedDataset,
    build_transform,
    channel_stats,
)
from pydantic import ValidationError
from torch.utils.data import Subset, TensorDataset

INFO = DataInfo(modality="classification", num_classes=3, input_shape=(2,))


def _data(n: int, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 2, generator=g), torch.arange(n) % 3)


# -- splits ---------------------------------------------------------------------------------
def test_labels_of_reads_tensor_subset_and_dict_datasets():
    ds = _data(12)
    assert labels_of(ds).tolist() == [i % 3 for i in range(12)]
    assert labels_of(Subset(Subset(ds, [5, 6, 7, 8]), [1, 3])).tolist() == [0, 2]

    class Dicts:
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return {"inputs": torch.zeros(2), "labels": torch.tensor(2 - i)}

    assert labels_of(Dicts()).tolist() == [2, 1, 0]


def test_random_forget_is_a_seeded_partition_with_a_whole_test_set():
    train, test = _data(50), _data(20, 1)
    s = random_forget(train, test, fraction=0.2, seed=3, info=INFO)
    assert len(s.forget) == 10 and len(s.retain) == 40 and len(s.test) == 20
    assert sorted(s.forget_indices + list(s.retain.indices)) == list(range(50))
    assert random_forget(train, test, fraction=0.2, seed=3, info=INFO).forget_indices == \
        s.forget_indices
    assert random_forget(train, test, fraction=0.2, seed=4, info=INFO).forget_indices != \
        s.forget_indices
    with pytest.raises(ValueError, match="fraction"):
        random_forget(train, test, fraction=1.0, seed=0, info=INFO)


def test_class_forget_removes_every_example_of_the_classes_from_retain_and_test():
    train, test = _data(60), _data(30, 1)
    s = class_forget(train, test, classes=[0, 2], info=INFO)
    assert set(labels_of(s.forget).tolist()) == {0, 2} and len(s.forget) == 40
    assert set(labels_of(s.retain).tolist()) == {1}
    assert set(labels_of(s.test).tolist()) == {1}
    assert set(labels_of(s.extra["test_forgotten_class"]).tolist()) == {0, 2}
    with pytest.raises(ValueError, match="no training example"):
        class_forget(train, test, classes=7, info=INFO)


def test_entity_forget_forgets_every_example_of_the_chosen_entities():
    train, test = _data(40), _data(16, 1)
    authors_train = [f"author{i % 5}" for i in range(40)]
    authors_test = [f"author{i % 8}" for i in range(16)]
    s = entity_forget(train, test, train_entities=authors_train, test_entities=authors_test,
                      entity_ids=["author1", "author3"], info=INFO)
    assert s.forget_indices == [i for i in range(40) if i % 5 in (1, 3)]
    assert all(authors_train[i] not in ("author1", "author3") for i in s.retain.indices)
    assert list(s.test.indices) == [i for i in range(16) if i % 8 not in (1, 3)]
    assert list(s.extra["test_forgotten_entity"].indices) == [1, 3, 9, 11]
    # a single id works too; an unknown one names itself
    one = entity_forget(train, test, train_entities=authors_train, test_entities=authors_test,
                        entity_ids="author0", info=INFO)
    assert len(one.forget) == 8
    with pytest.raises(ValueError, match="author9"):
        entity_forget(train, test, train_entities=authors_train, test_entities=authors_test,
                      entity_ids=["author9"], info=INFO)
    with pytest.raises(ValueError, match="one entity id per example"):
        entity_forget(train, test, train_entities=authors_train[:-1],
                      test_entities=authors_test, entity_ids=["author0"], info=INFO)


def test_train_test_indices_are_stratified_and_seeded():
    labels = np.repeat(np.arange(4), [40, 40, 10, 10])
    train, test = train_test_indices(labels, test_fraction=0.25, seed=0)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    assert np.bincount(labels[test]).tolist() == [10, 10, 2, 3] or \
        np.bincount(labels[test]).tolist() == [10, 10, 3, 2]
    again, _ = train_test_indices(labels, test_fraction=0.25, seed=0)
    other, _ = train_test_indices(labels, test_fraction=0.25, seed=1)
    assert train.tolist() == again.tolist() and train.tolist() != other.tolist()
    _, plain_test = train_test_indices(30, test_fraction=0.5, seed=0)
    assert len(plain_test) == 15


# -- samplers -------------------------------------------------------------------------------
def _recorded_pairs(primary: str, seed: int, epochs: int, batch_size: int):
    """The (forget, retain) index batches the shared training loop really drew."""
    from erasus.strategy import LoopParams, LossStrategy, RunContext, UnlearnData
    from erasus.testing.tiny import tiny_classifier_problem

    problem = tiny_classifier_problem()
    seen: list[tuple[list[int], list[int]]] = []

    class Recorder(LossStrategy):
        name = "recorder"
        epoch_over = primary
        pair_with = "retain" if primary == "forget" else "forget"

        def loss(self, adapter, *, forget, retain):
            seen.append((forget["index"].tolist(), retain["index"].tolist()))
            return {"loss": adapter.per_example_loss(forget).mean() * 0.0}

    strategy = Recorder(LoopParams(epochs=epochs, batch_size=batch_size, checkpoint_every=0))
    strategy.unlearn(problem.adapter.clone(),
                     UnlearnData(forget=problem.forget, retain=problem.retain),
                     RunContext(seed=seed))
    return seen, len(problem.forget), len(problem.retain)


@pytest.mark.parametrize("primary", ["forget", "retain"])
def test_forget_retain_sampler_reproduces_the_shared_loops_pairing(primary):
    batch_size = 8 if primary == "forget" else 64
    seen, n_forget, n_retain = _recorded_pairs(primary, seed=5, epochs=2,
                                               batch_size=batch_size)
    sampler = ForgetRetainSampler(n_forget, n_retain, batch_size=batch_size, seed=5, epochs=2,
                                  primary=primary)
    assert list(sampler) == seen
    assert len(sampler) == len(seen)
    # different epochs shuffle differently; another seed gives other batches
    assert sampler.epoch(0) != sampler.epoch(1)
    other = ForgetRetainSampler(n_forget, n_retain, batch_size=batch_size, seed=6, epochs=2,
                                primary=primary)
    assert list(other) != seen


def test_forget_retain_sampler_covers_the_primary_set_each_epoch():
    sampler = ForgetRetainSampler(10, 100, batch_size=4, seed=0, epochs=3)
    for e in range(3):
        forget = [i for f, _ in sampler.epoch(e) for i in f]
        assert sorted(forget) == list(range(10))
        retain = [i for _, r in sampler.epoch(e) for i in r]
        assert len(set(retain)) == len(retain) == 12  # 3 full retain batches, no repeats
    with pytest.raises(ValueError, match="non-empty"):
        ForgetRetainSampler(0, 5, batch_size=2)


def test_class_balanced_sampler_balances_an_imbalanced_set():
    labels = np.array([0] * 90 + [1] * 8 + [2] * 2)
    sampler = ClassBalancedSampler(labels, batch_size=9, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 12
    for batch in batches:
        assert Counter(labels[batch].tolist()) == {0: 3, 1: 3, 2: 3}
    drawn = Counter(labels[[i for b in batches for i in b]].tolist())
    assert drawn[2] == drawn[0]  # the 2-example class is oversampled to parity
    assert list(ClassBalancedSampler(labels, batch_size=9, seed=0)) == batches
    sampler.set_epoch(1)
    assert list(sampler) != batches
    uneven = ClassBalancedSampler(labels, batch_size=10, seed=0, num_batches=20)
    for batch in uneven:
        counts = Counter(labels[batch].tolist())
        assert sorted(counts.values()) == [3, 3, 4]
    # usable as a DataLoader batch sampler
    loader = torch.utils.data.DataLoader(
        TensorDataset(torch.zeros(100, 1), torch.as_tensor(labels)),
        batch_sampler=ClassBalancedSampler(labels, batch_size=6, seed=1))
    _, y = next(iter(loader))
    assert sorted(Counter(y.tolist()).values()) == [2, 2, 2]


def test_balanced_weights_give_every_class_the_same_mass():
    labels = np.array([0] * 90 + [1] * 8 + [2] * 2)
    w = balanced_weights(labels)
    assert w.sum() == pytest.approx(1.0)
    mass = [w[labels == c].sum() for c in range(3)]
    assert mass == pytest.approx([1 / 3] * 3)


# -- transforms -----------------------------------------------------------------------------
def test_normalize_uses_training_statistics_per_channel():
    g = torch.Generator().manual_seed(0)
    x = torch.stack([torch.randn(50, 4, 4, generator=g) * 3 + 5,
                     torch.rand(50, 4, 4, generator=g)], dim=1)
    mean, std = channel_stats(x)
    assert float(std[0]) == pytest.approx(3, abs=0.3)
    assert mean.shape == (2,) and float(mean[0]) == pytest.approx(5, abs=0.3)
    norm = Normalize.from_data(x)
    z = torch.stack([norm(xi) for xi in x])
    m2, s2 = channel_stats(z)
    assert torch.allclose(m2, torch.zeros(2), atol=1e-5)
    assert torch.allclose(s2, torch.ones(2), atol=1e-4)
    # vectors: per feature
    v = torch.randn(30, 3, generator=g) * torch.tensor([1.0, 10.0, 0.1])
    nv = Normalize.from_data(v)
    zv = torch.stack([nv(vi) for vi in v])
    assert torch.allclose(zv.std(dim=0, unbiased=False), torch.ones(3), atol=1e-4)


def test_random_shift_translates_with_zero_fill_and_is_seeded():
    img = torch.zeros(1, 6, 6)
    img[0, 2, 3] = 1.0
    shift = RandomShift(max_pixels=2)
    outs = [shift(img, torch.Generator().manual_seed(s)) for s in range(20)]
    for out in outs:
        assert out.shape == img.shape and float(out.sum()) == 1.0
        (r, c), = torch.nonzero(out[0]).tolist()
        assert abs(r - 2) <= 2 and abs(c - 3) <= 2
    assert len({tuple(torch.nonzero(o[0])[0].tolist()) for o in outs}) > 3
    again = shift(img, torch.Generator().manual_seed(7))
    assert torch.equal(again, outs[7])


def test_transform_specs_build_from_config_dicts():
    x = torch.rand(20, 1, 5, 5)
    chain = build_transform([{"name": "normalize"}, {"name": "shift", "max_pixels": 1},
                             {"name": "noise", "std": 0.1}, {"name": "hflip", "p": 1.0}], x)
    assert isinstance(chain, Compose) and len(chain) == 4
    assert isinstance(chain.transforms[2], GaussianNoise) and chain.is_random
    with pytest.raises(ValidationError):
        build_transform([{"name": "rotate"}], x)
    with pytest.raises(ValidationError):
        build_transform([{"name": "shift", "max_pixels": -1}], x)
    with pytest.raises(ValueError, match="training inputs"):
        build_transform([{"name": "normalize"}])


def test_transformed_dataset_is_deterministic_per_item_until_the_epoch_changes():
    base = TensorDataset(torch.zeros(4, 1, 3, 3), torch.arange(4))
    ds = TransformedDataset(base, GaussianNoise(1.0), seed=3)
    x0, y0 = ds[0]
    assert torch.equal(ds[0][0], x0) and int(y0) == 0
    assert not torch.equal(ds[1][0], x0)
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], x0)
    other = TransformedDataset(base, GaussianNoise(1.0), seed=4)
    assert not torch.equal(other[0][0], x0)
