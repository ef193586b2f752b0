"""``digits_diffusion``: scikit-learn's digits as images in [-1, 1] with labels and prompts."""

from __future__ import annotations

import pytest
import torch
from erasus.errors import IncompatibleComponentError
from erasus_diffusion.digits import DigitsDiffusion


def labels(dataset):
    return [dataset[i]["class_label"] for i in range(len(dataset))]


def test_items_are_images_in_minus_one_one_with_a_label_and_a_prompt():
    splits = DigitsDiffusion().load(seed=0)
    assert len(splits.train) + len(splits.test) + len(splits.extra["test_forgotten_class"]) \
        == 1797
    item = splits.train[0]
    assert set(item) == {"image", "class_label", "prompt"}
    assert item["image"].dtype == torch.float32 and tuple(item["image"].shape) == (1, 8, 8)
    pixels = torch.stack([splits.train[i]["image"] for i in range(len(splits.train))])
    assert pixels.min() == -1.0 and pixels.max() == 1.0
    assert item["prompt"].startswith("a handwritten digit ")
    assert splits.info.modality == "diffusion" and splits.info.num_classes == 10
    assert splits.info.input_shape == (1, 8, 8)


def test_class_forgetting_forgets_every_training_image_of_the_digit():
    splits = DigitsDiffusion(forget={"kind": "class", "class_id": 3}).load(seed=0)
    assert set(labels(splits.forget)) == {3}
    assert 3 not in labels(splits.retain) and 3 not in labels(splits.test)
    assert set(labels(splits.extra["test_forgotten_class"])) == {3}
    assert labels(splits.train).count(3) == len(splits.forget)


def test_random_forgetting_draws_a_fraction_with_the_run_seed():
    provider = DigitsDiffusion(forget={"kind": "random", "fraction": 0.2})
    a, b, c = provider.load(seed=0), provider.load(seed=0), provider.load(seed=1)
    assert len(a.forget) == round(0.2 * len(a.train))
    assert a.forget_indices == b.forget_indices != c.forget_indices
    assert len(set(labels(a.forget))) > 1


def test_classes_sizes_channels_and_prompts_are_configurable():
    splits = DigitsDiffusion(classes=[1, 7], per_class=20, image_size=16, channels=3,
                             prompt_template="digit {label}",
                             forget={"kind": "class", "class_id": 7}).load(seed=0)
    assert len(splits.train) + len(splits.test) + len(splits.extra["test_forgotten_class"]) \
        == 40
    item = splits.forget[0]
    assert tuple(item["image"].shape) == (3, 16, 16)
    assert torch.equal(item["image"][0], item["image"][2])
    assert item["prompt"] == "digit 7" and item["class_label"] == 7
    assert splits.info.input_shape == (3, 16, 16)


def test_a_forget_class_outside_the_kept_classes_is_an_error():
    with pytest.raises(IncompatibleComponentError, match=r"not among data\.classes"):
        DigitsDiffusion(classes=[1, 2], forget={"kind": "class", "class_id": 0}).load(seed=0)
