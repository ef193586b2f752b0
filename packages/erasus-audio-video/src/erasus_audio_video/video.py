"""``synthetic_video``: tiny clips of a moving shape, labelled by direction or by shape."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from erasus.components import Params
from erasus.data import DataInfo, DatasetParams, DatasetProvider, Splits, forget_splits
from pydantic import Field

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DIRECTIONS",
    "SHAPES",
    "TINY_VIDEO",
    "SyntheticVideo",
    "SyntheticVideoParams",
    "VideoForgetParams",
    "render_clip",
]

#: Class names of ``label: direction`` and their per-frame (dy, dx) unit moves.
DIRECTIONS: dict[str, tuple[int, int]] = {"right": (0, 1), "left": (0, -1), "down": (1, 0),
                                          "up": (-1, 0)}
#: Class names of ``label: shape``.
SHAPES = ("square", "frame", "cross", "diagonal")


def _mask(shape: str, k: int) -> np.ndarray:
    import numpy as np

    m = np.zeros((k, k), dtype=np.float32)
    if shape == "square":
        m[:] = 1
    elif shape == "frame":
        m[[0, -1], :] = 1
        m[:, [0, -1]] = 1
    elif shape == "cross":
        m[k // 2, :] = 1
        m[:, k // 2] = 1
    elif shape == "diagonal":
        np.fill_diagonal(m, 1)
        np.fill_diagonal(np.fliplr(m), 1)
    else:
        raise ValueError(f"unknown shape {shape!r}; shapes: {', '.join(SHAPES)}")
    return m


def render_clip(shape: str, direction: str, rng: np.random.Generator, *, frames: int = 4,
                size: int = 16, channels: int = 3, speed: int = 3, shape_size: int = 5,
                noise: float = 0.05) -> np.ndarray:
    """One clip ``[frames, channels, size, size]`` in [0, 1]: a ``shape`` of a random
    colour moving ``speed`` pixels per frame towards ``direction`` over a noisy background,
    from a random start chosen so it stays inside the frame."""
    import numpy as np

    dy, dx = DIRECTIONS[direction]
    travel = speed * (frames - 1)
    lo_y = travel if dy < 0 else 0
    hi_y = size - shape_size - (travel if dy > 0 else 0)
    lo_x = travel if dx < 0 else 0
    hi_x = size - shape_size - (travel if dx > 0 else 0)
    if hi_y < lo_y or hi_x < lo_x:
        raise ValueError(f"a {shape_size}px shape moving {travel}px does not fit in "
                         f"{size}x{size} frames; lower speed or frames, or raise size")
    y0 = int(rng.integers(lo_y, hi_y + 1))
    x0 = int(rng.integers(lo_x, hi_x + 1))
    colour = rng.uniform(0.6, 1.0, size=channels).astype(np.float32)
    mask = _mask(shape, shape_size)
    clip = np.clip(0.1 + noise * rng.standard_normal((frames, channels, size, size)), 0, 1)
    clip = clip.astype(np.float32)
    for t in range(frames):
        y, x = y0 + dy * speed * t, x0 + dx * speed * t
        region = clip[t, :, y:y + shape_size, x:x + shape_size]
        clip[t, :, y:y + shape_size, x:x + shape_size] = np.where(
            mask > 0, colour[:, None, None], region)
    return clip


class VideoForgetParams(Params):
    """Which training clips to forget."""

    kind: Literal["random", "class"] = Field(
        "random", description="'random': a random fraction of the training clips; 'class': "
        "every training clip of one class.")
    fraction: float = Field(
        0.1, gt=0, lt=1, description="Share of the training clips to forget (kind 'random').")
    class_id: int = Field(0, ge=0, le=3, description="The class to forget (kind 'class').")


class SyntheticVideoParams(DatasetParams):
    """Parameters of the synthetic video data set."""

    forget: VideoForgetParams = Field(default_factory=VideoForgetParams,
                                      description="What to forget: {kind, fraction, class_id}.")
    label: Literal["direction", "shape"] = Field(
        "direction", description="What the class is: the direction of motion (right, left, "
        "down, up; the shape is random) or the shape (square, frame, cross, diagonal; the "
        "direction is random).")
    frames: int = Field(4, ge=2, description="Frames per clip.")
    size: int = Field(16, ge=8, description="Frame height and width in pixels.")
    channels: int = Field(3, ge=1, description="Colour channels.")
    speed: int = Field(3, ge=1, description="Pixels the shape moves per frame.")
    train_per_class: int = Field(24, ge=1, description="Training clips per class.")
    test_per_class: int = Field(8, ge=1, description="Test clips per class.")
    noise: float = Field(0.05, ge=0, description="Standard deviation of the background noise.")
    split_seed: int = Field(
        0, description="Seed of the clips themselves (independent of the run seed, so every "
        "run seed sees the same clips).")


class SyntheticVideo(DatasetProvider):
    """Tiny synthetic clips of a moving shape, four classes (offline, generated).

    Items are dicts ``{"pixel_values": float32 [frames, channels, size, size] in [0, 1],
    "labels": int}`` (the default collate function stacks them). With ``label:
    direction`` the class is where the shape moves (right, left, down, up) and the shape
    is drawn at random; with ``label: shape`` the class is the shape and the direction
    is random. Colours and start positions are random; each clip is generated from its
    own seed (``split_seed``, split, class, repetition), so the clips do not depend on the
    run seed.

    - Random forgetting (``forget.kind: random``): ``round(fraction * len(train))``
      training clips drawn with the run seed.
    - Class-wise forgetting (``forget.kind: class``): every training clip of
      ``class_id``; ``test`` then leaves that class out, and the split
      ``test_forgotten_class`` holds the test clips of that class.
    """

    name = "synthetic_video"
    modalities = ("video",)
    Params = SyntheticVideoParams
    paper = None

    def load(self, *, seed: int) -> Splits:
        import numpy as np
        import torch

        from erasus_audio_video._data import DictDataset

        p: SyntheticVideoParams = self.params  # type: ignore[assignment]
        names = list(DIRECTIONS) if p.label == "direction" else list(SHAPES)
        directions = list(DIRECTIONS)

        def clips(split: int, per_class: int) -> list[dict[str, Any]]:
            items = []
            for c in range(len(names)):
                for rep in range(per_class):
                    rng = np.random.default_rng([p.split_seed, split, c, rep])
                    if p.label == "direction":
                        shape, direction = SHAPES[int(rng.integers(len(SHAPES)))], names[c]
                    else:
                        shape = names[c]
                        direction = directions[int(rng.integers(len(directions)))]
                    clip = render_clip(shape, direction, rng, frames=p.frames, size=p.size,
                                       channels=p.channels, speed=p.speed, noise=p.noise)
                    items.append({"pixel_values": torch.from_numpy(clip), "labels": c})
            return items

        train_items = clips(0, p.train_per_class)
        test_items = clips(1, p.test_per_class)
        train = DictDataset(train_items)
        test_full = DictDataset(test_items)
        y_train = np.array([item["labels"] for item in train_items])
        y_test = np.array([item["labels"] for item in test_items])
        forget = p.forget
        return forget_splits(
            train, test_full, seed=seed, fraction=forget.fraction,
            groups=None if forget.kind == "random" else (y_train == forget.class_id,
                                                         y_test == forget.class_id),
            info=DataInfo(modality="video", num_classes=len(names),
                          input_shape=(p.frames, p.channels, p.size, p.size),
                          extra={"class_names": names, "label": p.label}))


#: The tiny settings of the ``videomae`` adapter's ``tiny_problem`` (and of the tests):
#: 12 training and 4 test clips per direction (48 train, 16 test).
TINY_VIDEO: dict[str, Any] = {
    "train_per_class": 12,
    "test_per_class": 4,
    "forget": {"kind": "random", "fraction": 0.15},
}
