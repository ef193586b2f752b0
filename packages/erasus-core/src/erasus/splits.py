"""Forget/retain/test splits: random, class-wise and per-entity forgetting.

Every function returns :class:`erasus.data.Splits` built by
:func:`erasus.data.forget_splits` (the one implementation the bundled data sets use), so
``forget`` and ``retain`` are ``Subset`` views that partition ``train`` and
``forget_indices`` are sorted positions in ``train``:

- :func:`random_forget`: a seeded random fraction of the training set; ``test`` whole.
- :func:`class_forget`: every training example of one or more classes; ``test`` leaves
  those classes out and the extra split ``test_forgotten_class`` holds them.
- :func:`entity_forget`: every training example of chosen entity ids (an author, a
  speaker, a user: any per-example group label); ``test`` leaves those entities out and
  ``test_forgotten_entity`` holds them.

:func:`train_test_indices` makes the (optionally stratified) train/test split itself, and
:func:`labels_of` reads the labels of a dataset of ``(x, y)`` items without collating it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from erasus.data import DataInfo, Splits

__all__ = [
    "class_forget",
    "entity_forget",
    "labels_of",
    "random_forget",
    "train_test_indices",
]

_LABEL_KEYS = ("labels", "label", "y", "target", "targets")


def labels_of(dataset: Any) -> np.ndarray:
    """The label of every item of ``dataset``, as an int64 array.

    Reads the label tensor directly for a ``TensorDataset`` (its second tensor) and for
    (nested) ``Subset`` views of one; otherwise indexes every item and takes its second
    element (tuple items) or its ``labels``/``label``/``y`` entry (dict items).
    """
    import numpy as np
    from torch.utils.data import Subset, TensorDataset

    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return np.asarray(dataset.tensors[1].cpu().numpy(), dtype=np.int64).reshape(-1)
    if isinstance(dataset, Subset):
        return labels_of(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    out = []
    for i in range(len(dataset)):
        item = dataset[i]
        if isinstance(item, dict):
            key = next((k for k in _LABEL_KEYS if k in item), None)
            if key is None:
                raise ValueError(f"item {i} has no label key ({', '.join(_LABEL_KEYS)}); "
                                 f"keys: {sorted(item)}")
            out.append(int(item[key]))
        else:
            out.append(int(item[1]))
    return np.asarray(out, dtype=np.int64)


def train_test_indices(n_or_labels: int | Sequence[int] | Any, *, test_fraction: float,
                       seed: int, stratify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train, test)`` positions: a seeded split holding out ``test_fraction``.

    Given labels and ``stratify=True``, each class keeps (to rounding) the same share in the
    test part (``sklearn.model_selection.train_test_split`` with ``stratify``); given a
    count ``n``, a plain random split. The draw depends only on ``seed``.
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if isinstance(n_or_labels, (int, np.integer)):
        positions = np.arange(int(n_or_labels))
        labels = None
    else:
        labels = np.asarray(n_or_labels)
        positions = np.arange(len(labels))
    train, test = train_test_split(positions, test_size=test_fraction, random_state=int(seed),
                                   stratify=labels if stratify and labels is not None else None)
    return np.sort(train), np.sort(test)


def random_forget(train: Any, test: Any, *, fraction: float, seed: int, info: DataInfo,
                  collate_fn: Any = None) -> Splits:
    """Forget ``max(1, round(fraction * len(train)))`` training examples drawn with ``seed``."""
    from erasus.data import forget_splits

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    return forget_splits(train, test, info=info, seed=seed, fraction=fraction,
                         collate_fn=collate_fn)


def class_forget(train: Any, test: Any, *, classes: int | Iterable[int], info: DataInfo,
                 train_labels: Any = None, test_labels: Any = None, seed: int = 0,
                 collate_fn: Any = None) -> Splits:
    """Forget every training example of ``classes``; ``test`` leaves them out.

    Labels are read with :func:`labels_of` unless given. The held-out examples of the
    forgotten classes go to the extra split ``test_forgotten_class``.
    """
    import numpy as np

    from erasus.data import forget_splits

    chosen = np.atleast_1d(np.asarray(list(classes) if not isinstance(classes, int)
                                      else [classes], dtype=np.int64))
    y_train = labels_of(train) if train_labels is None else np.asarray(train_labels)
    y_test = labels_of(test) if test_labels is None else np.asarray(test_labels)
    in_train = np.isin(y_train, chosen)
    if not in_train.any():
        raise ValueError(f"no training example has a class in {chosen.tolist()}")
    return forget_splits(train, test, info=info, seed=seed,
                         groups=(in_train, np.isin(y_test, chosen)), group="class",
                         collate_fn=collate_fn)


def entity_forget(train: Any, test: Any, *, train_entities: Any, test_entities: Any,
                  entity_ids: Any, info: DataInfo, seed: int = 0,
                  collate_fn: Any = None) -> Splits:
    """Forget every training example of the entities ``entity_ids`` (per-entity forgetting).

    ``train_entities`` and ``test_entities`` give the entity id of each example (any
    hashable values: author names, speaker ids). ``test`` keeps only examples of other
    entities; ``test_forgotten_entity`` holds the test examples of the forgotten ones.
    """
    import numpy as np

    from erasus.data import forget_splits

    ids = [entity_ids] if isinstance(entity_ids, (str, int)) else list(entity_ids)
    e_train = np.asarray(list(train_entities), dtype=object)
    e_test = np.asarray(list(test_entities), dtype=object)
    if len(e_train) != len(train) or len(e_test) != len(test):
        raise ValueError(
            f"need one entity id per example: {len(e_train)} for {len(train)} training and "
            f"{len(e_test)} for {len(test)} test examples")
    chosen = set(ids)
    in_train = np.array([e in chosen for e in e_train], dtype=bool)
    missing = chosen - set(e_train[in_train].tolist())
    if missing:
        raise ValueError(f"entity ids {sorted(map(str, missing))} have no training example")
    in_test = np.array([e in chosen for e in e_test], dtype=bool)
    return forget_splits(train, test, info=info, seed=seed, groups=(in_train, in_test),
                         group="entity", collate_fn=collate_fn)
