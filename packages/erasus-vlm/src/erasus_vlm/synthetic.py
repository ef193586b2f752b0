"""A synthetic image-caption data set generated in code: coloured shapes and their captions.

Every image is a small RGB picture of one shape (square, circle, triangle or cross) in one
colour and one size, in one quadrant of a noisy dark background; its caption names them,
for example ``"a small red circle in the top left"``. Nothing is downloaded, and the same
parameters always give the same images.
"""

from __future__ import annotations

from itertools import product
from typing import TYPE_CHECKING, Any, Literal

from erasus.components import Params
from erasus.data import DataInfo, DatasetParams, DatasetProvider, Splits, forget_splits
from erasus.errors import IncompatibleComponentError
from pydantic import Field, model_validator

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "COLOURS",
    "MODALITY",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "ImageTextDataset",
    "SyntheticImageText",
    "SyntheticImageTextParams",
    "caption_words",
    "captions",
    "make_image_text",
]

#: The modality string of this package's components.
MODALITY = "vision-language"

#: RGB in [0, 1] of each colour word.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.12, 0.1),
    "green": (0.12, 0.75, 0.2),
    "blue": (0.15, 0.3, 0.95),
    "yellow": (0.95, 0.85, 0.1),
    "purple": (0.6, 0.2, 0.8),
    "white": (0.95, 0.95, 0.95),
}
SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "cross")
SIZES: tuple[str, ...] = ("small", "large")
#: Quadrants of the image a shape is drawn in.
POSITIONS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
_FILLERS = frozenset({"a", "in", "the"})

#: The per-channel mean and standard deviation OpenAI's CLIP normalises images with.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _concepts(colours: tuple[str, ...], shapes: tuple[str, ...], sizes: tuple[str, ...],
              positions: tuple[str, ...]) -> list[tuple[str | None, str, str, str | None]]:
    return list(product(sizes or (None,), colours, shapes, positions or (None,)))


def _caption(size: str | None, colour: str, shape: str, position: str | None) -> str:
    words = ["a", *([size] if size else []), colour, shape]
    if position:
        words += ["in", "the", position]
    return " ".join(words)


def captions(colours: tuple[str, ...] = tuple(COLOURS), shapes: tuple[str, ...] = SHAPES,
             sizes: tuple[str, ...] = SIZES, positions: tuple[str, ...] = POSITIONS
             ) -> list[str]:
    """Every caption of the given words (``"a small red square in the top left"``...).

    With ``sizes=()`` the captions name no size, with ``positions=()`` no position.
    """
    return [_caption(*c) for c in _concepts(colours, shapes, sizes, positions)]


def caption_words(texts: list[str]) -> set[str]:
    """The content words of captions (colours, shapes, sizes and position words)."""
    return {w for t in texts for w in t.split()} - _FILLERS


def _draw(rng: np.random.Generator, shape: str, size: str | None, position: str | None,
          colour: tuple[float, ...], image_size: int) -> np.ndarray:
    import numpy as np

    s = image_size
    if position:  # a quadrant: the shape is drawn inside it
        area = s / 2
        oy = 0.0 if position.startswith("top") else area
        ox = 0.0 if position.endswith("left") else area
    else:
        area, oy, ox = float(s), 0.0, 0.0
    radius = (0.24 if size == "small" else 0.4) * area * rng.uniform(0.9, 1.1)
    margin = radius + 0.5
    free = area - 2 * margin
    if free > 0:
        jy, jx = rng.uniform(0, free, size=2)
        cy, cx = oy + margin + jy, ox + margin + jx
    else:
        cy, cx = oy + area / 2, ox + area / 2
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    dy, dx = yy - cy, xx - cx
    if shape == "square":
        mask = (np.abs(dy) <= radius * 0.85) & (np.abs(dx) <= radius * 0.85)
    elif shape == "circle":
        mask = dy ** 2 + dx ** 2 <= radius ** 2
    elif shape == "triangle":  # apex up: the half-width grows linearly down to the base
        top, bottom = cy - radius, cy + radius
        half = (yy - top) / 2
        mask = (yy >= top) & (yy <= bottom) & (np.abs(dx) <= half)
    else:  # cross
        arm = max(radius * 0.3, 0.75)
        mask = ((np.abs(dy) <= arm) & (np.abs(dx) <= radius)) | \
               ((np.abs(dx) <= arm) & (np.abs(dy) <= radius))
    image = rng.uniform(0.0, 0.2, size=(3, s, s)).astype(np.float32)
    tint = np.clip(np.asarray(colour, np.float32) + rng.normal(0, 0.04, 3), 0, 1)
    image[:, mask] = tint[:, None].astype(np.float32)
    return image


def make_image_text(n: int, *, seed: int = 0, image_size: int = 24,
                    colours: tuple[str, ...] = tuple(COLOURS), shapes: tuple[str, ...] = SHAPES,
                    sizes: tuple[str, ...] = SIZES, positions: tuple[str, ...] = POSITIONS,
                    normalize: bool = True) -> tuple[torch.Tensor, list[str]]:
    """``n`` images ``[n, 3, image_size, image_size]`` and their captions.

    Every concept (caption of :func:`captions`) appears equally often (each block of
    ``len(captions(...))`` examples holds each concept once, in a random order), so any
    run of consecutive pairs (an evaluation batch) is a random mix of concepts, in every
    split alike. The order, exact place and size, tint and background noise are drawn
    from ``seed``. With ``normalize`` the pixels are standardised with CLIP's mean and
    std, as CLIP's preprocessing does.
    """
    import numpy as np
    import torch

    for kind, given, allowed in (("colours", colours, COLOURS), ("shapes", shapes, SHAPES),
                                 ("sizes", sizes, SIZES), ("positions", positions, POSITIONS)):
        unknown = [w for w in given if w not in allowed]
        if unknown:
            raise IncompatibleComponentError(
                f"unknown {kind} {unknown}; choose from {', '.join(allowed)}")
    concepts = _concepts(colours, shapes, sizes, positions)
    rng = np.random.default_rng(int(seed))
    order = np.concatenate([rng.permutation(len(concepts))
                            for _ in range(-(-n // len(concepts)))])[:n]
    images = np.empty((n, 3, image_size, image_size), dtype=np.float32)
    texts = []
    for k, c in enumerate(order):
        size, colour, shape, position = concepts[int(c)]
        images[k] = _draw(rng, shape, size, position, COLOURS[colour], image_size)
        texts.append(_caption(size, colour, shape, position))
    tensor = torch.from_numpy(images)
    if normalize:
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        tensor = (tensor - mean) / std
    return tensor, texts


class ImageTextDataset:
    """Image-caption pairs: item ``i`` is ``{"image": float tensor [3, H, W], "text": str}``.

    The default collate function turns a list of items into
    ``{"image": [B, 3, H, W], "text": [B strings]}``, which the CLIP adapters' ``prepare_batch``
    tokenises.
    """

    def __init__(self, images: torch.Tensor, texts: list[str]) -> None:
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} captions")
        self.images = images
        self.texts = list(texts)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "text": self.texts[i]}


class ForgetParams(Params):
    """Which training examples to forget."""

    kind: Literal["random", "concept"] = Field(
        "random", description="'random': a random fraction of the training set; 'concept': "
        "every training example whose caption contains the word `concept`.")
    fraction: float = Field(
        0.1, gt=0, lt=1, description="Share of the training set to forget (kind 'random').")
    concept: str = Field(
        "red", description="What to forget (kind 'concept'): a colour (red, green, blue, "
        "yellow, purple, white), a shape (square, circle, triangle, cross), a size (small, "
        "large) or a position (top left, top right, bottom left, bottom right, or one word "
        "of them such as left).")


class SyntheticImageTextParams(DatasetParams):
    """Parameters of the synthetic image-caption data set."""

    forget: ForgetParams = Field(default_factory=ForgetParams,
                                 description="What to forget: {kind, fraction, concept}.")
    n_train: int = Field(320, ge=4, description="Training pairs (forget + retain).")
    n_test: int = Field(96, ge=2, description="Held-out test pairs.")
    image_size: int = Field(24, ge=8, description="Height and width of the images in pixels.")
    colours: list[str] = Field(
        default_factory=lambda: list(COLOURS),
        description=f"Colour words used (a subset of {', '.join(COLOURS)}).")
    shapes: list[str] = Field(
        default_factory=lambda: list(SHAPES),
        description=f"Shape words used (a subset of {', '.join(SHAPES)}).")
    sizes: list[str] = Field(
        default_factory=lambda: list(SIZES),
        description="Size words used (a subset of small, large; empty: captions name no "
        "size and every shape is large).")
    positions: list[str] = Field(
        default_factory=lambda: list(POSITIONS),
        description=f"Quadrants used (a subset of {', '.join(POSITIONS)}; empty: captions "
        "name no position and shapes are placed anywhere).")
    data_seed: int = Field(
        0, description="Seed of the images (independent of the run seed, so every run seed "
        "sees the same train and test sets).")

    @model_validator(mode="after")
    def _known_words(self) -> SyntheticImageTextParams:
        for field, allowed in (("colours", COLOURS), ("shapes", SHAPES), ("sizes", SIZES),
                               ("positions", POSITIONS)):
            values = getattr(self, field)
            bad = [v for v in values if v not in allowed]
            if bad or len(set(values)) != len(values):
                raise ValueError(f"{field} must be distinct words from {', '.join(allowed)}; "
                                 f"got {values}")
        if not self.colours or not self.shapes:
            raise ValueError("colours and shapes must each name at least one word")
        return self


class SyntheticImageText(DatasetProvider):
    """Coloured shapes and their captions, generated in code (offline image-text pairs).

    Each pair is an image of one shape in one colour and size, drawn in one quadrant (24 x
    24 pixels by default, standardised with CLIP's mean and std), and its caption, such as
    ``"a small red circle in the top left"``; items are ``{"image": float tensor [3, H, W],
    "text": str}``. With the default words there are 192 captions, so a batch rarely holds
    two pairs with the same caption (which the contrastive loss could not tell apart).
    Training and test images are drawn from ``data_seed`` (the test set from another
    stream), every caption equally often.

    - Random forgetting (``forget.kind: random``): ``round(fraction * n_train)`` training
      pairs drawn with the run seed.
    - Concept forgetting (``forget.kind: concept``): every training pair whose caption
      contains ``forget.concept`` (a colour, shape, size or position); ``test`` then leaves
      that concept out, and the split ``test_forgotten_concept`` holds its test pairs.

    ``forget`` and ``retain`` are ``Subset`` views of ``train`` that partition it;
    ``forget_indices`` are the (sorted) positions of the forget pairs in ``train``.
    ``info.extra["captions"]`` lists every caption the set can contain.
    """

    name = "synthetic_image_text"
    modalities = (MODALITY,)
    Params = SyntheticImageTextParams
    paper = None

    def load(self, *, seed: int) -> Splits:
        import numpy as np

        p: SyntheticImageTextParams = self.params  # type: ignore[assignment]
        words = {"colours": tuple(p.colours), "shapes": tuple(p.shapes),
                 "sizes": tuple(p.sizes), "positions": tuple(p.positions)}
        x_train, t_train = make_image_text(p.n_train, seed=p.data_seed,
                                           image_size=p.image_size, **words)
        x_test, t_test = make_image_text(p.n_test, seed=p.data_seed + 1_000_003,
                                         image_size=p.image_size, **words)
        train = ImageTextDataset(x_train, t_train)
        test_full = ImageTextDataset(x_test, t_test)

        groups = None
        if p.forget.kind != "random":
            word = " ".join(p.forget.concept.split())
            vocabulary = caption_words(captions(**words)) | set(p.positions)
            if word not in vocabulary:
                raise IncompatibleComponentError(
                    f"data 'synthetic_image_text': forget.concept '{word}' is in no caption; "
                    f"choose one of {', '.join(sorted(vocabulary))}")

            def has(texts: list[str]) -> np.ndarray:
                return np.array([f" {word} " in f" {t} " for t in texts])

            groups = (has(t_train), has(t_test))
            if groups[0].all():
                raise IncompatibleComponentError(
                    f"data 'synthetic_image_text': every training caption contains "
                    f"'{word}', so nothing would be retained; add other words")
        return forget_splits(
            train, test_full, seed=seed, fraction=p.forget.fraction, groups=groups,
            group="concept",
            info=DataInfo(modality=MODALITY, input_shape=(3, p.image_size, p.image_size),
                          extra={"captions": captions(**words)}))
