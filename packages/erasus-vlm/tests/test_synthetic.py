"""``synthetic_image_text``: coloured shapes whose captions say what and where they are."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from erasus.errors import IncompatibleComponentError
from erasus_vlm.synthetic import (
    CLIP_MEAN,
    CLIP_STD,
    COLOURS,
    SyntheticImageText,
    captions,
    make_image_text,
)
from pydantic import ValidationError


def shape_mask(image: np.ndarray) -> np.ndarray:
    """Pixels of the shape: the background noise is below 0.2 in every channel."""
    return image.max(axis=0) > 0.3


def test_images_show_what_their_captions_say():
    images, texts = make_image_text(192, seed=3, normalize=False)
    assert images.shape == (192, 3, 24, 24) and images.dtype == torch.float32
    assert sorted(texts) == sorted(captions())  # each of the 192 captions once
    for image, text in zip(images.numpy(), texts, strict=True):
        words = text.split()
        mask = shape_mask(image)
        assert mask.any(), text
        ys, xs = np.nonzero(mask)
        assert (ys < 12).all() if "top" in words else (ys >= 12).all(), text
        assert (xs < 12).all() if "left" in words else (xs >= 12).all(), text
        colour = next(w for w in words if w in COLOURS)
        tint = image[:, mask].mean(axis=1)
        assert np.abs(tint - np.asarray(COLOURS[colour])).max() < 0.15, text
    small = [shape_mask(i).sum() for i, t in zip(images.numpy(), texts, strict=True)
             if "small" in t]
    large = [shape_mask(i).sum() for i, t in zip(images.numpy(), texts, strict=True)
             if "large" in t]
    assert np.mean(large) > 2 * np.mean(small)


def test_images_are_normalised_like_clips_preprocessing():
    raw, _ = make_image_text(8, seed=1, normalize=False)
    norm, _ = make_image_text(8, seed=1)
    mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
    torch.testing.assert_close(norm, (raw - mean) / std)


def test_captions_leave_out_what_is_not_used():
    assert captions(("red",), ("square",), (), ()) == ["a red square"]
    assert captions(("red",), ("square",), ("small",), ("top left",)) == [
        "a small red square in the top left"]


def test_splits_are_deterministic_and_partition_train():
    splits = SyntheticImageText().load(seed=0)
    assert len(splits.train) == 320 and len(splits.test) == 96
    assert len(splits.forget) == 32 and len(splits.retain) == 288
    assert splits.info.modality == "vision-language"
    assert splits.info.input_shape == (3, 24, 24)
    assert len(splits.info.extra["captions"]) == 192
    item = splits.forget[0]
    assert set(item) == {"image", "text"} and item["image"].shape == (3, 24, 24)
    again = SyntheticImageText().load(seed=0)
    assert again.forget_indices == splits.forget_indices
    assert torch.equal(again.test[5]["image"], splits.test[5]["image"])
    other_seed = SyntheticImageText().load(seed=1)
    assert other_seed.forget_indices != splits.forget_indices
    assert torch.equal(other_seed.train[0]["image"], splits.train[0]["image"])  # same data


def test_concept_forgetting():
    splits = SyntheticImageText(forget={"kind": "concept", "concept": "red"}).load(seed=0)
    assert len(splits.forget) > 0
    assert all("red" in splits.forget[i]["text"].split() for i in range(len(splits.forget)))
    assert not any("red" in splits.retain[i]["text"].split()
                   for i in range(len(splits.retain)))
    assert not any("red" in splits.test[i]["text"].split() for i in range(len(splits.test)))
    held = splits.extra["test_forgotten_concept"]
    assert len(held) > 0 and all("red" in held[i]["text"] for i in range(len(held)))
    left = SyntheticImageText(forget={"kind": "concept", "concept": "top left"}).load(seed=0)
    assert all(left.forget[i]["text"].endswith("top left") for i in range(len(left.forget)))


def test_bad_parameters_are_refused():
    with pytest.raises(IncompatibleComponentError, match="choose one of"):
        SyntheticImageText(forget={"kind": "concept", "concept": "orange"}).load(seed=0)
    with pytest.raises(IncompatibleComponentError, match="nothing would be retained"):
        SyntheticImageText(colours=["red"], forget={"kind": "concept",
                                                    "concept": "red"}).load(seed=0)
    with pytest.raises(ValidationError, match="colours"):
        SyntheticImageText(colours=["orange"])
    with pytest.raises(ValidationError):
        SyntheticImageText(forget={"kind": "random", "fraction": 1.5})
