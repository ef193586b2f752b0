"""``digits_diffusion``: scikit-learn's 8x8 digits as images in [-1, 1] with class labels and
prompts, split for class-wise or random forgetting (offline, bundled with scikit-learn)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from erasus.components import Params
from erasus.data import DataInfo, DatasetParams, DatasetProvider, Splits, forget_splits
from erasus.errors import IncompatibleComponentError
from pydantic import Field

if TYPE_CHECKING:
    import torch

__all__ = ["DIGIT_NAMES", "DigitsDiffusion", "DigitsDiffusionParams", "DigitsForgetParams"]

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class DigitsForgetParams(Params):
    """Which training images to forget."""

    kind: Literal["class", "random"] = Field(
        "class", description="'class': every training image of one digit (the usual "
        "class-wise forgetting of diffusion unlearning); 'random': a random fraction of the "
        "training set.")
    class_id: int = Field(0, ge=0, le=9, description="The digit to forget (kind 'class').")
    fraction: float = Field(
        0.1, gt=0, lt=1, description="Share of the training set to forget (kind 'random').")


class DigitsDiffusionParams(DatasetParams):
    """Parameters of the digits diffusion data set."""

    forget: DigitsForgetParams = Field(
        default_factory=DigitsForgetParams,
        description="What to forget: {kind, class_id, fraction}.")
    classes: list[int] | None = Field(
        None, description="Digits to keep (default: all ten); labels stay the digits.")
    per_class: int | None = Field(
        None, ge=2, description="Keep at most this many images of each digit (the first in "
        "scikit-learn's order); default: all (about 180).")
    test_fraction: float = Field(
        0.25, gt=0, lt=1, description="Share held out as the test set (stratified by digit).")
    split_seed: int = Field(
        0, description="Seed of the train/test split (independent of the run seed).")
    image_size: int = Field(
        8, ge=8, description="Height and width of the images (bilinear upsampling above 8).")
    channels: Literal[1, 3] = Field(
        1, description="1: grey images; 3: the grey image repeated as RGB (for RGB models "
        "such as a Stable Diffusion VAE).")
    prompt_template: str = Field(
        "a handwritten digit {name}", description="Each item's prompt; '{label}' is the "
        "digit, '{name}' its English name.")


class _DigitImages:
    """Items ``{"image": float [C, S, S] in [-1, 1], "class_label": int, "prompt": str}``."""

    def __init__(self, images: torch.Tensor, labels: list[int], template: str) -> None:
        self.images = images
        self.labels = labels
        self.prompts = [template.format(label=y, name=DIGIT_NAMES[y]) for y in labels]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "class_label": self.labels[i],
                "prompt": self.prompts[i]}


class DigitsDiffusion(DatasetProvider):
    """The 1,797 8x8 handwritten digits of scikit-learn as a diffusion benchmark (offline).

    Images (``sklearn.datasets.load_digits``, pixel values 0-16) are mapped to [-1, 1]
    (``pixel / 8 - 1``), shaped ``[channels, image_size, image_size]``; each item also has
    its digit as ``class_label`` and a ``prompt`` from ``prompt_template``, so the same data
    trains class-conditional and prompt-conditional models. A stratified split seeded by
    ``split_seed`` holds out ``test_fraction`` as the test set.

    - Class-wise forgetting (``forget.kind: class``, the default): every training image of
      ``class_id``; ``test`` leaves that digit out and the extra split
      ``test_forgotten_class`` holds its test images.
    - Random forgetting (``forget.kind: random``): ``round(fraction * len(train))``
      training images drawn with the run seed.

    ``forget`` and ``retain`` are ``Subset`` views that partition ``train``;
    ``forget_indices`` are the sorted positions of the forget images in ``train``.
    ``info.num_classes`` is 10 whatever ``classes`` keeps, so labels are the digits.
    """

    name = "digits_diffusion"
    modalities = ("diffusion",)
    needs = frozenset()
    Params = DigitsDiffusionParams
    paper = None

    def load(self, *, seed: int) -> Splits:
        import numpy as np
        import torch
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        p: DigitsDiffusionParams = self.params  # type: ignore[assignment]
        bunch = load_digits()
        x_all = np.asarray(bunch.images, dtype=np.float32)
        y_all = np.asarray(bunch.target, dtype=np.int64)
        classes = sorted(set(p.classes)) if p.classes is not None else list(range(10))
        if not classes or any(c < 0 or c > 9 for c in classes):
            raise IncompatibleComponentError(
                f"data.classes must be digits 0-9, got {p.classes}")
        keep = np.concatenate([np.flatnonzero(y_all == c)[:p.per_class] for c in classes])
        keep.sort()
        x_all, y_all = x_all[keep], y_all[keep]
        if p.forget.kind == "class" and p.forget.class_id not in classes:
            raise IncompatibleComponentError(
                f"data.forget.class_id {p.forget.class_id} is not among data.classes {classes}")

        images = torch.from_numpy(x_all)[:, None] / 8.0 - 1.0
        if p.image_size != 8:
            images = torch.nn.functional.interpolate(
                images, size=(p.image_size, p.image_size), mode="bilinear",
                align_corners=False).clamp(-1.0, 1.0)
        if p.channels == 3:
            images = images.repeat(1, 3, 1, 1)
        positions = np.arange(len(y_all))
        train_pos, test_pos = train_test_split(
            positions, test_size=p.test_fraction, stratify=y_all, random_state=p.split_seed)
        train_pos, test_pos = np.sort(train_pos), np.sort(test_pos)
        y_train, y_test = y_all[train_pos], y_all[test_pos]
        train = _DigitImages(images[train_pos].contiguous(), [int(y) for y in y_train],
                             p.prompt_template)
        test_full = _DigitImages(images[test_pos].contiguous(), [int(y) for y in y_test],
                                 p.prompt_template)

        forget = p.forget
        return forget_splits(
            train, test_full, seed=seed, fraction=forget.fraction,
            groups=None if forget.kind == "random" else (y_train == forget.class_id,
                                                         y_test == forget.class_id),
            info=DataInfo(modality="diffusion", num_classes=10,
                          input_shape=(p.channels, p.image_size, p.image_size),
                          extra={"classes": classes, "prompt_template": p.prompt_template}))
