"""Tiny trained models and data sets for tests (each trains in well under a second)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from erasus.adapters import TinyProblem

__all__ = [
    "MEMORISATION_RECIPE",
    "loss_and_accuracy",
    "memorisation_classifier",
    "memorisation_data",
    "record_training",
    "tiny_classification_data",
    "tiny_classifier_problem",
    "train_classifier",
]

#: The ``retrain`` settings that make :func:`memorisation_classifier` memorise its data.
MEMORISATION_RECIPE: dict[str, Any] = {"epochs": 100, "lr": 1e-2, "batch_size": 50,
                                       "scheduler": "constant"}


def tiny_classification_data(seed: int = 0, *, n_train: int = 240, n_test: int = 120,
                             num_classes: int = 4, dim: int = 10):
    """Gaussian blobs: ``(train, test)`` TensorDatasets of ``(x, y)`` pairs."""
    import torch
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=g) * 2.0

    def draw(n: int) -> TensorDataset:
        y = torch.arange(n) % num_classes
        x = centers[y] + torch.randn(n, dim, generator=g) * 1.5
        return TensorDataset(x, y)

    return draw(n_train), draw(n_test)


def train_classifier(adapter, dataset, *, epochs: int = 60, lr: float = 1e-2,
                     batch_size: int = 64, seed: int = 0) -> None:
    """Plain supervised training of a classifier adapter (used to make tiny originals)."""
    import torch
    from torch.utils.data import DataLoader

    torch.manual_seed(seed)
    model = adapter.model
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    for _ in range(epochs):
        for raw in loader:
            batch = adapter.prepare_batch(raw)
            loss = adapter.per_example_loss(batch).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def tiny_classifier_problem(seed: int = 0) -> TinyProblem:
    """A small MLP trained on 4-class blobs, with 10% of its training data to forget."""
    import torch
    from torch.utils.data import Subset

    from erasus.adapters import TinyProblem
    from erasus.builtin.models.classifier import ClassifierAdapter, ClassifierParams
    from erasus.data import DataInfo

    train, test = tiny_classification_data(seed)
    torch.manual_seed(seed)
    adapter = ClassifierAdapter.build(
        ClassifierParams(arch="mlp", hidden=32),
        DataInfo(modality="classification", num_classes=4, input_shape=(10,)))
    train_classifier(adapter, train, seed=seed)
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 1))
    n_forget = len(train) // 10
    forget = Subset(train, sorted(perm[:n_forget].tolist()))
    retain = Subset(train, sorted(perm[n_forget:].tolist()))
    # SCRUB's student starts equal to its teacher, so its first max step has a zero KL
    # gradient (only float noise, which Adam scales up to a full step in some direction):
    # with one forget batch per max phase, whether the forget loss rises in the suite's 5
    # steps depended on that noise. Smaller forget batches give real max steps after it.
    return TinyProblem(adapter, forget, retain, test,
                       info=DataInfo(modality="classification", num_classes=4, input_shape=(10,)),
                       strategy_params={"scrub": {"forget_batch_size": 4}})


def record_training(problem: TinyProblem, kinds: Any, *, directory: Any = None,
                    seed: int = 0) -> TinyProblem:
    """The problem with its model retrained from scratch on forget + retain while a
    :class:`erasus.record.Recorder` records ``kinds`` (checkpoints, correctness, updates).

    The original is re-initialised and trained by the ``retrain`` strategy (with the
    problem's ``strategy_params["retrain"]``) through the shared loop, on the training set
    ``ConcatDataset([forget, retain])``, so forget example ``i`` has training index ``i``.
    Returns a new TinyProblem (same data) with ``record`` and ``forget_train_indices`` set.
    """
    import tempfile

    from torch.utils.data import ConcatDataset

    from erasus.adapters import TinyProblem
    from erasus.builtin.strategies.retrain import Retrain, RetrainParams
    from erasus.record import Recorder
    from erasus.strategy import RunContext, UnlearnData

    train = ConcatDataset([problem.forget, problem.retain])
    directory = directory or tempfile.mkdtemp(prefix="erasus-record-")
    adapter = problem.adapter.clone()
    recorder = Recorder(directory, kinds, len(train))
    strategy = Retrain(RetrainParams(**problem.strategy_params.get("retrain", {})))
    strategy.unlearn(adapter, UnlearnData(forget=None, retain=train, info=problem.info,
                                          collate_fn=problem.collate_fn),
                     RunContext(seed=seed, recorder=recorder))
    adapter.model.eval()
    out = TinyProblem(adapter, problem.forget, problem.retain, problem.test,
                      problem.collate_fn, problem.info, problem.extra, problem.strategy_params)
    out.record = recorder.finish()
    out.forget_train_indices = list(range(len(problem.forget)))
    return out


def memorisation_data(n_forget: int = 20):
    """Heavily overlapping 4-class blobs in 20 dimensions, for measuring forgetting:
    ``(train, forget, retain, test)``, 200 train and 200 test examples, ``n_forget`` of
    the training examples (a seeded random choice, in train order) to forget.

    A model trained on ``train`` memorises it (its forget examples included) but gets
    held-out data right only at about 60%, so a model retrained without the forget set
    does no better than that on it: forgetting is measurable as the forget loss and
    accuracy moving from the original's to the retrained oracle's.
    """
    import torch
    from torch.utils.data import Subset, TensorDataset

    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 20, generator=g) * 0.35

    def draw(n: int) -> TensorDataset:
        y = torch.arange(n) % 4
        return TensorDataset(centers[y] + torch.randn(n, 20, generator=g), y)

    train, test = draw(200), draw(200)
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(1))
    forget = Subset(train, sorted(perm[:n_forget].tolist()))
    retain = Subset(train, sorted(perm[n_forget:].tolist()))
    return train, forget, retain, test


def memorisation_classifier(train: Any = None):
    """The MLP (hidden width 64, initialised with torch seed 0) for
    :func:`memorisation_data`: untrained, or, given a data set, trained on it by the
    ``retrain`` strategy with :data:`MEMORISATION_RECIPE` (run seed 0)."""
    import torch

    from erasus.builtin.models.classifier import ClassifierAdapter, ClassifierParams
    from erasus.builtin.strategies.retrain import Retrain
    from erasus.data import DataInfo
    from erasus.strategy import RunContext, UnlearnData

    torch.manual_seed(0)
    adapter = ClassifierAdapter.build(ClassifierParams(arch="mlp", hidden=64),
                                      DataInfo("classification", 4, (20,)))
    if train is not None:
        Retrain(**MEMORISATION_RECIPE).unlearn(adapter, UnlearnData(forget=None, retain=train),
                                               RunContext(seed=0))
    return adapter


def loss_and_accuracy(adapter: Any, dataset: Any) -> tuple[float, float]:
    """``(mean loss, accuracy in percent)`` of a classifier adapter on a whole data set
    (one batch, no gradients)."""
    import torch
    from torch.utils.data.dataloader import default_collate

    batch = adapter.prepare_batch(default_collate([dataset[i] for i in range(len(dataset))]))
    with torch.no_grad():
        loss = adapter.per_example_loss(batch).mean()
        acc = (adapter.logits(batch).argmax(-1) == batch["labels"]).float().mean() * 100
    return float(loss), float(acc)
