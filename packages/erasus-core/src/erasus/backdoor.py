"""The synthetic backdoor (BadNets-style trigger poisoning) for unlearning benchmarks.

Gu et al. (2017), "BadNets: Identifying Vulnerabilities in the Machine Learning Model
Supply Chain" (https://arxiv.org/abs/1708.06733): a small bright patch (the trigger) is
stamped onto some training images of other classes, which are relabelled to a target
class. A model trained on them classifies any image carrying the trigger as the target
class, while staying accurate on clean images. Unlearning the poisoned examples must
remove the backdoor: the ``attack_success_rate`` metric (share of triggered test images of
non-target classes classified as the target) then falls to the rate of a clean model.

:func:`backdoor_splits` builds the benchmark: the poisoned examples are the forget set, the
clean rest of the training set the retain set, the test set stays clean, and the extra split
``test_triggered`` holds the triggered test images of non-target classes (with their true
labels). The trigger settings travel in ``info.extra["backdoor"]`` so the metric stamps
the same trigger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.components import Paper, Params

if TYPE_CHECKING:
    import numpy as np
    import torch

    from erasus.data import DataInfo, Splits

__all__ = [
    "BADNETS",
    "BackdoorParams",
    "TriggerParams",
    "TriggeredDataset",
    "backdoor_splits",
    "patch_size_for",
    "poison",
    "poison_indices",
    "stamp_trigger",
]

BADNETS = Paper(
    title="BadNets: Identifying Vulnerabilities in the Machine Learning Model Supply Chain",
    authors="Tianyu Gu, Brendan Dolan-Gavitt, Siddharth Garg",
    year=2017,
    url="https://arxiv.org/abs/1708.06733",
    venue="arXiv (NIPS MLSec workshop)",
)

Corner = Literal["bottom_right", "bottom_left", "top_right", "top_left"]


class TriggerParams(Params):
    """The trigger: a square patch of one value in one corner of the image."""

    patch_size: int | None = Field(
        None, ge=1, description="Side of the square patch in pixels (default: max(2, H // 8): "
        "2 for 8x8 digits, 3 for 28x28 MNIST). For vector inputs: the number of features.")
    value: float = Field(
        1.0, description="Value written into the patch (1.0: the brightest pixel of inputs "
        "scaled to [0, 1]).")
    corner: Corner = Field("bottom_right", description="Corner the patch is stamped in.")


class BackdoorParams(TriggerParams):
    """The backdoor attack: the trigger, the target class and how much to poison."""

    target_class: int = Field(0, ge=0, description="Class the poisoned examples are "
                              "relabelled to (the attack's target).")
    fraction: float = Field(
        0.1, gt=0, le=1, description="Share of the training examples of the other classes "
        "that are poisoned (stamped and relabelled).")


def patch_size_for(shape: tuple[int, ...] | Any, patch_size: int | None = None) -> int:
    """The patch side for inputs of ``shape`` (one example): given, or ``max(2, H // 8)``."""
    if patch_size is not None:
        return int(patch_size)
    shape = tuple(int(d) for d in shape)
    if len(shape) >= 2:
        return max(2, min(shape[-2], shape[-1]) // 8)
    return 2


def stamp_trigger(x: torch.Tensor, *, patch_size: int | None = None, value: float = 1.0,
                  corner: str = "bottom_right", batched: bool | None = None) -> torch.Tensor:
    """A copy of ``x`` with the trigger stamped on every example.

    ``x`` is one example or a batch (``batched``; default: a batch when it has 4 dims for
    images). For inputs with two or more dims (``(C, H, W)``, ``(H, W)``) the patch is a
    ``patch_size`` x ``patch_size`` square of ``value`` in ``corner`` of the last two dims,
    on every channel; for vectors ``(D,)`` it is the last (``*_right``) or first
    (``*_left``) ``patch_size`` features.
    """
    out = x.clone()
    if batched is None:
        batched = out.dim() == 4
    example_dims = out.dim() - (1 if batched else 0)
    example_shape = tuple(out.shape[1:] if batched else out.shape)
    k = patch_size_for(example_shape, patch_size)
    right = corner.endswith("right")
    if example_dims >= 2:
        h, w = out.shape[-2], out.shape[-1]
        if k > min(h, w):
            raise ValueError(f"trigger patch {k}x{k} does not fit images of {h}x{w}")
        rows = slice(h - k, h) if corner.startswith("bottom") else slice(0, k)
        cols = slice(w - k, w) if right else slice(0, k)
        out[..., rows, cols] = value
    else:
        d = out.shape[-1]
        if k > d:
            raise ValueError(f"trigger of {k} features does not fit inputs of {d}")
        out[..., slice(d - k, d) if right else slice(0, k)] = value
    return out


def poison_indices(labels: Any, *, target_class: int, fraction: float, seed: int
                   ) -> np.ndarray:
    """Sorted positions of the examples to poison: ``max(1, round(fraction * m))`` of the
    ``m`` examples whose label is not ``target_class``, drawn with
    ``numpy.random.default_rng(seed)``."""
    import numpy as np

    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    others = np.flatnonzero(y != int(target_class))
    if len(others) == 0:
        raise ValueError(f"every example has the target class {target_class}; nothing to "
                         "poison")
    k = max(1, round(fraction * len(others)))
    return np.sort(np.random.default_rng(int(seed)).choice(others, size=k, replace=False))


def poison(x: torch.Tensor, y: torch.Tensor, params: BackdoorParams, *, seed: int
           ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``(x, y)`` with the chosen examples stamped and relabelled, and their positions."""
    import numpy as np
    import torch

    idx = poison_indices(y.cpu().numpy(), target_class=params.target_class,
                         fraction=params.fraction, seed=seed)
    x_p, y_p = x.clone(), y.clone()
    sel = torch.as_tensor(idx.astype(np.int64))
    x_p[sel] = stamp_trigger(x[sel], patch_size=params.patch_size, value=params.value,
                             corner=params.corner, batched=True)
    y_p[sel] = int(params.target_class)
    return x_p, y_p, idx


class TriggeredDataset:
    """``dataset`` with the trigger stamped on every input (labels unchanged)."""

    def __init__(self, dataset: Any, *, patch_size: int | None = None, value: float = 1.0,
                 corner: str = "bottom_right") -> None:
        self.dataset = dataset
        self.trigger = {"patch_size": patch_size, "value": value, "corner": corner}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        item = self.dataset[i]
        if isinstance(item, dict):
            from erasus.transforms import TransformedDataset

            key = next((k for k in TransformedDataset._INPUT_KEYS if k in item), None)
            if key is None:
                raise ValueError(f"item {i} has no input key to stamp a trigger on")
            return {**item, key: stamp_trigger(item[key], batched=False, **self.trigger)}
        return (stamp_trigger(item[0], batched=False, **self.trigger), *item[1:])


def backdoor_splits(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                    y_test: torch.Tensor, params: BackdoorParams, *, seed: int,
                    info: DataInfo) -> Splits:
    """The backdoor-unlearning benchmark: forget the poisoned examples.

    ``train`` is the training set with ``poison`` applied (same size: BadNets replaces the
    chosen images by their triggered, relabelled versions); ``forget`` are the poisoned
    examples, ``retain`` the clean rest, ``test`` the clean test set, and the extra split
    ``test_triggered`` the test examples of every other class with the trigger stamped (true
    labels kept). ``info.extra["backdoor"]`` records the trigger (with the resolved patch
    size), the target class and the number of poisoned examples.
    """
    import dataclasses

    import numpy as np
    from torch.utils.data import Subset, TensorDataset

    from erasus.data import Splits

    n_classes = info.num_classes
    if n_classes is not None and not 0 <= params.target_class < n_classes:
        raise ValueError(f"target_class {params.target_class} is not a class of this data set "
                         f"(0..{n_classes - 1})")
    x_p, y_p, idx = poison(x_train, y_train, params, seed=seed)
    k = patch_size_for(tuple(x_train.shape[1:]), params.patch_size)
    train = TensorDataset(x_p, y_p)
    forget_indices = [int(i) for i in idx]
    mask = np.ones(len(train), dtype=bool)
    mask[idx] = False
    others = y_test != int(params.target_class)
    triggered = TensorDataset(
        stamp_trigger(x_test[others], patch_size=k, value=params.value, corner=params.corner,
                      batched=True), y_test[others].clone())
    record = {"target_class": int(params.target_class), "patch_size": k,
              "value": float(params.value), "corner": params.corner,
              "fraction": float(params.fraction), "n_poisoned": len(forget_indices)}
    info = dataclasses.replace(info, extra={**info.extra, "backdoor": record})
    return Splits(train=train, forget=Subset(train, forget_indices),
                  retain=Subset(train, np.flatnonzero(mask).tolist()),
                  test=TensorDataset(x_test, y_test), info=info,
                  forget_indices=forget_indices, extra={"test_triggered": triggered})

