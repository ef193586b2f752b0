"""Preprocessing and small tensor augmentations, usable from configs.

A transform is a callable ``transform(x, generator) -> x`` on one input tensor (an image
``(C, H, W)`` or a feature vector ``(D,)``); random ones draw only from the
``torch.Generator`` they are given, so they are reproducible. Configs describe a list of
transforms with :data:`TransformSpec` entries, e.g. in a data set's parameters::

    data: {name: mnist5000, transforms: [{name: normalize}, {name: shift, max_pixels: 2}]}

- ``normalize``: ``(x - mean) / std`` per channel (images) or per feature (vectors), with
  the statistics of the training data (:func:`channel_stats`), never of the test data;
- ``shift``: translate by up to ``max_pixels`` pixels in each direction, zero-filled;
- ``noise``: add Gaussian noise of standard deviation ``std``;
- ``hflip``: mirror left-right with probability ``p``.

:func:`build_transform` turns the specs into one :class:`Compose`;
:class:`TransformedDataset` applies a transform to the inputs of a dataset of ``(x, y)``
items, drawing each item's randomness from a generator seeded by ``(seed, epoch, index)``:
an item looks the same every time it is read, until :meth:`TransformedDataset.set_epoch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from erasus.components import Params

if TYPE_CHECKING:
    import torch

__all__ = [
    "Compose",
    "GaussianNoise",
    "HFlipSpec",
    "HorizontalFlip",
    "NoiseSpec",
    "Normalize",
    "NormalizeSpec",
    "RandomShift",
    "ShiftSpec",
    "TransformSpec",
    "TransformedDataset",
    "build_transform",
    "channel_stats",
]


def channel_stats(x: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of a batch of inputs ``(N, C, ...)`` per channel.

    For images ``(N, C, H, W)`` the statistics are per channel (over examples and pixels);
    for vectors ``(N, D)`` per feature. The std is floored at ``eps`` (constant features).
    """

    if x.dim() < 2:
        raise ValueError(f"channel_stats needs a batch (N, C, ...), got shape {tuple(x.shape)}")
    dims = [0, *range(2, x.dim())]
    x = x.double()
    mean = x.mean(dim=dims)
    std = x.std(dim=dims, unbiased=False).clamp_min(eps)
    return mean.float(), std.float()


def _per_channel(stat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return stat.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


class Normalize:
    """``(x - mean) / std`` per channel (or per feature of a vector input)."""

    def __init__(self, mean: Any, std: Any) -> None:
        import torch

        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if bool((self.std <= 0).any()):
            raise ValueError("Normalize needs positive standard deviations")

    @classmethod
    def from_data(cls, x: torch.Tensor) -> Normalize:
        """The normalisation with the statistics of the batch ``x`` (see :func:`channel_stats`)."""
        return cls(*channel_stats(x))

    def __call__(self, x: torch.Tensor, generator: Any = None) -> torch.Tensor:
        return (x - _per_channel(self.mean, x)) / _per_channel(self.std, x)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class RandomShift:
    """Translate an image ``(C, H, W)`` by up to ``max_pixels`` in each axis, zero-filled."""

    def __init__(self, max_pixels: int = 1) -> None:
        if max_pixels < 0:
            raise ValueError("max_pixels must be >= 0")
        self.max_pixels = int(max_pixels)

    def __call__(self, x: torch.Tensor, generator: Any = None) -> torch.Tensor:
        import torch

        if x.dim() < 2:
            raise ValueError(f"shift needs an image (C, H, W) or (H, W), got {tuple(x.shape)}")
        k = self.max_pixels
        if k == 0:
            return x
        dy, dx = (int(v) for v in torch.randint(-k, k + 1, (2,), generator=generator))
        h, w = x.shape[-2], x.shape[-1]
        out = torch.zeros_like(x)
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h),
                                                                   slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w),
                                                                   slice(0, w + dx))
        out[..., yd, xd] = x[..., ys, xs]
        return out


class GaussianNoise:
    """Add ``N(0, std^2)`` noise to every entry."""

    def __init__(self, std: float = 0.05) -> None:
        if std < 0:
            raise ValueError("std must be >= 0")
        self.std = float(std)

    def __call__(self, x: torch.Tensor, generator: Any = None) -> torch.Tensor:
        import torch

        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return x + self.std * noise


class HorizontalFlip:
    """Mirror the last axis with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError("p must be in [0, 1]")
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator: Any = None) -> torch.Tensor:
        import torch

        if float(torch.rand((), generator=generator)) < self.p:
            return torch.flip(x, dims=[-1])
        return x


class Compose:
    """Apply transforms in order, sharing one generator."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, generator: Any = None) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, generator)
        return x

    @property
    def is_random(self) -> bool:
        return any(not isinstance(t, Normalize) for t in self.transforms)

    def __len__(self) -> int:
        return len(self.transforms)


class NormalizeSpec(Params):
    """Normalise with the training data's per-channel mean and std."""

    name: Literal["normalize"] = Field("normalize", description="The transform.")


class ShiftSpec(Params):
    """Translate images by up to ``max_pixels`` pixels in each axis (zero-filled)."""

    name: Literal["shift"] = Field("shift", description="The transform.")
    max_pixels: int = Field(1, ge=0, description="Largest shift, in pixels.")


class NoiseSpec(Params):
    """Add Gaussian noise."""

    name: Literal["noise"] = Field("noise", description="The transform.")
    std: float = Field(0.05, ge=0, description="Standard deviation of the noise.")


class HFlipSpec(Params):
    """Mirror images left-right at random."""

    name: Literal["hflip"] = Field("hflip", description="The transform.")
    p: float = Field(0.5, ge=0, le=1, description="Probability of a flip.")


#: One entry of a config's transform list (``{name: normalize}``, ``{name: shift, ...}``).
TransformSpec = Annotated[NormalizeSpec | ShiftSpec | NoiseSpec | HFlipSpec,
                          Field(discriminator="name")]


def build_transform(specs: Sequence[Any], train_inputs: torch.Tensor | None = None
                    ) -> Compose:
    """One :class:`Compose` from transform specs (models or plain dicts), in order.

    ``normalize`` takes its statistics from ``train_inputs`` (the training inputs, stacked
    ``(N, ...)``), which must then be given.
    """
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Any] = TypeAdapter(TransformSpec)
    out: list[Any] = []
    for raw in specs:
        spec = adapter.validate_python(raw.model_dump() if isinstance(raw, Params) else raw)
        if spec.name == "normalize":
            if train_inputs is None:
                raise ValueError("transform 'normalize' needs the training inputs for its "
                                 "statistics")
            out.append(Normalize.from_data(train_inputs))
        elif spec.name == "shift":
            out.append(RandomShift(spec.max_pixels))
        elif spec.name == "noise":
            out.append(GaussianNoise(spec.std))
        else:
            out.append(HorizontalFlip(spec.p))
    return Compose(out)


class TransformedDataset:
    """``dataset`` with ``transform`` applied to the input of every ``(x, y, ...)`` item.

    Item ``i`` is transformed with a ``torch.Generator`` seeded by ``(seed, epoch, i)``, so
    reading it twice gives the same tensor and the same seed gives the same data set;
    :meth:`set_epoch` draws new augmentations. Dict items have their ``inputs`` (or
    ``pixel_values``/``x``) entry transformed.
    """

    _INPUT_KEYS = ("inputs", "pixel_values", "input", "x", "image", "images", "features")

    def __init__(self, dataset: Any, transform: Any, *, seed: int = 0) -> None:
        self.dataset, self.transform, self.seed = dataset, transform, int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def _generator(self, i: int) -> Any:
        import torch

        mixed = (self.seed * 1_000_003 + self.epoch * 7_919 + int(i)) % (2**63 - 1)
        return torch.Generator().manual_seed(mixed)

    def __getitem__(self, i: int) -> Any:
        item = self.dataset[i]
        g = self._generator(i)
        if isinstance(item, dict):
            key = next((k for k in self._INPUT_KEYS if k in item), None)
            if key is None:
                raise ValueError(f"item {i} has no input key ({', '.join(self._INPUT_KEYS)})")
            return {**item, key: self.transform(item[key], g)}
        return (self.transform(item[0], g), *item[1:])
