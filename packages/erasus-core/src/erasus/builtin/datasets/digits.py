"""The scikit-learn 8x8 handwritten digits, split for random or class-wise forgetting."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from erasus.backdoor import BackdoorParams
from erasus.components import Params
from erasus.data import DataInfo, DatasetParams, DatasetProvider, Splits, forget_splits

__all__ = ["Digits", "DigitsParams", "ForgetParams"]


class ForgetParams(Params):
    """Which training examples to forget."""

    kind: Literal["random", "class", "backdoor"] = Field(
        "random", description="'random': a random fraction of the training set; 'class': "
        "every training example of one class; 'backdoor': the training examples poisoned "
        "with a trigger patch (settings in the data set's 'backdoor').")
    fraction: float = Field(
        0.1, gt=0, lt=1, description="Share of the training set to forget (kind 'random').")
    class_id: int = Field(0, ge=0, le=9, description="The digit to forget (kind 'class').")


class DigitsParams(DatasetParams):
    """Parameters of the digits data set."""

    forget: ForgetParams = Field(default_factory=ForgetParams,
                                 description="What to forget: {kind, fraction, class_id}.")
    test_fraction: float = Field(
        0.25, gt=0, lt=1, description="Share of the 1,797 images held out as the test set "
        "(stratified by class).")
    backdoor: BackdoorParams = Field(
        default_factory=BackdoorParams, description="The backdoor attack of forget.kind "
        "'backdoor': {target_class, fraction, patch_size, value, corner}.")
    split_seed: int = Field(
        0, description="Seed of the train/test split (independent of the run seed, so every "
        "run seed sees the same test set).")


class Digits(DatasetProvider):
    """The 8x8 handwritten digits that ship inside scikit-learn (offline, 1,797 images).

    The images (the test part of the UCI "Optical Recognition of Handwritten Digits" data
    set, loaded with ``sklearn.datasets.load_digits``) are scaled to [0, 1] (pixel / 16)
    and shaped ``(1, 8, 8)``; items are ``(x float32, y long)`` pairs. A stratified split
    seeded by ``split_seed`` holds out ``test_fraction`` as the test set.

    - Random forgetting (``forget.kind: random``): ``round(fraction * len(train))``
      training examples drawn with the run seed.
    - Class-wise forgetting (``forget.kind: class``): every training example of
      ``class_id``; ``test`` then leaves that class out, and the split
      ``test_forgotten_class`` holds the test examples of that class.
    - Backdoor forgetting (``forget.kind: backdoor``): a BadNets trigger patch (Gu et al.,
      2017; default 2x2, value 1.0, bottom-right) is stamped on ``backdoor.fraction`` of the
      training images of the classes other than ``backdoor.target_class``, drawn with the
      run seed, and they are relabelled to the target; those poisoned examples are the
      forget set. ``test`` stays clean and ``test_triggered`` holds the triggered test
      images of the other classes, for the ``attack_success_rate`` metric (see
      :func:`erasus.backdoor.backdoor_splits`).

    ``forget`` and ``retain`` are ``Subset`` views of ``train`` that partition it;
    ``forget_indices`` are the (sorted) positions of the forget examples in ``train``.
    """

    name = "digits"
    modalities = ("classification",)
    Params = DigitsParams
    paper = None

    def load(self, *, seed: int) -> Splits:
        import numpy as np
        import torch
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        from torch.utils.data import TensorDataset

        p: DigitsParams = self.params  # type: ignore[assignment]
        bunch = load_digits()
        x_all = np.asarray(bunch.images, dtype=np.float32)[:, None, :, :] / 16.0
        y_all = np.asarray(bunch.target, dtype=np.int64)
        x_train, x_test, y_train, y_test = train_test_split(
            x_all, y_all, test_size=p.test_fraction, stratify=y_all, random_state=p.split_seed)
        train = TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train))
        test_full = TensorDataset(torch.from_numpy(x_test), torch.from_numpy(y_test))
        forget = p.forget
        info = DataInfo(modality="classification", num_classes=10, input_shape=(1, 8, 8))
        if forget.kind == "backdoor":
            from erasus.backdoor import backdoor_splits

            return backdoor_splits(torch.from_numpy(x_train), torch.from_numpy(y_train),
                                   torch.from_numpy(x_test), torch.from_numpy(y_test),
                                   p.backdoor, seed=seed, info=info)
        return forget_splits(
            train, test_full, seed=seed, fraction=forget.fraction,
            groups=None if forget.kind == "random" else (y_train == forget.class_id,
                                                         y_test == forget.class_id),
            info=info)
