"""Shared pieces of the saliency, sparsity and second-order strategies (private).

Per-parameter importances (squared gradients, the diagonal Fisher), exact top-k masks,
gradient-masking hooks and the classifier check those strategies (and random_label) share.
Gradients come from :mod:`erasus.gradients`; nothing here computes them another way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from erasus.errors import IncompatibleComponentError

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.strategy import History, LossStrategy, RunContext, UnlearnData

__all__ = [
    "batch_fisher",
    "classifier_classes",
    "diag_fisher",
    "masked_gradients",
    "masked_unlearn",
    "scatter",
    "squared_grads",
    "top_fraction",
    "true_fisher",
]


def scatter(adapter: ModelAdapter, names: Sequence[str], flat: torch.Tensor
            ) -> dict[str, torch.Tensor]:
    """Split a flat vector over ``names`` (in that order) into tensors of their shapes."""
    params = dict(adapter.model.named_parameters())
    out: dict[str, torch.Tensor] = {}
    start = 0
    for name in names:
        p = params[name]
        out[name] = flat[start:start + p.numel()].view_as(p)
        start += p.numel()
    if start != flat.numel():
        raise ValueError(f"a vector of {flat.numel()} values for {start} parameters")
    return out


def top_fraction(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """A boolean mask of exactly ``round(fraction * n)`` entries: the highest scores.

    Ties are broken by position (a stable sort), so the count is exact and the choice
    deterministic.
    """
    import torch

    n = scores.numel()
    k = round(float(fraction) * n)
    mask = torch.zeros(n, dtype=torch.bool, device=scores.device)
    if k > 0:
        order = torch.sort(scores.reshape(-1), descending=True, stable=True).indices
        mask[order[:k]] = True
    return mask.view_as(scores)


def squared_grads(adapter: ModelAdapter, dataset: Any, *, names: Sequence[str],
                  collate_fn: Any = None, batch_size: int = 64, loss_fn: Any = None
                  ) -> torch.Tensor:
    """The sum over ``dataset`` of each example's squared loss gradient (flat, ``names``)."""
    from erasus.gradients import iter_example_grads

    total: torch.Tensor | None = None
    for _, grads in iter_example_grads(adapter, dataset, names=list(names),
                                       batch_size=batch_size, collate_fn=collate_fn,
                                       loss_fn=loss_fn):
        part = grads.pow(2).sum(0)
        total = part if total is None else total + part
    if total is None:
        raise IncompatibleComponentError("cannot compute importances on an empty data set")
    return total


def diag_fisher(adapter: ModelAdapter, dataset: Any, *, names: Sequence[str],
                collate_fn: Any = None, batch_size: int = 64) -> torch.Tensor:
    """The empirical diagonal Fisher: the mean over ``dataset`` of each example's squared
    gradient of its training loss (``per_example_loss``), flat over ``names``."""
    return squared_grads(adapter, dataset, names=names, collate_fn=collate_fn,
                         batch_size=batch_size) / len(dataset)


def batch_fisher(adapter: ModelAdapter, dataset: Any, *, names: Sequence[str],
                 batch_size: int, collate_fn: Any = None) -> torch.Tensor:
    """The mini-batch estimate of the diagonal Fisher: the mean over consecutive batches of
    ``dataset`` (in order; a last batch below ``min_batch_size`` joins the one before) of
    the squared gradient of the batch's mean loss (``erasus.gradients.mean_grad``)."""
    from erasus.data import chunk, subset
    from erasus.gradients import mean_grad

    batches = chunk(list(range(len(dataset))), batch_size, adapter.min_batch_size)
    if not batches:
        raise IncompatibleComponentError("cannot compute importances on an empty data set")
    total: torch.Tensor | None = None
    for indices in batches:
        g = mean_grad(adapter, subset(dataset, indices), names=list(names),
                      batch_size=len(indices), collate_fn=collate_fn).pow(2)
        total = g if total is None else total + g
    assert total is not None
    return total / len(batches)


def true_fisher(adapter: ModelAdapter, dataset: Any, *, names: Sequence[str],
                num_classes: int, collate_fn: Any = None, batch_size: int = 64
                ) -> torch.Tensor:
    """The diagonal Fisher of a classifier's predictive distribution (labels from the model):
    ``mean_x sum_y p(y|x) (d log p(y|x) / d theta)^2``, flat over ``names``.

    For each class ``y`` the per-example loss with every label set to ``y`` is
    ``-log p(y|x)``; its gradient is scaled by ``sqrt(p(y|x))`` (a constant computed
    without gradient), so the squared gradients sum to the expectation over ``y``.
    """
    import torch

    total: torch.Tensor | None = None
    for label in range(num_classes):
        def loss_fn(a: Any, batch: dict[str, Any], y: int = label) -> torch.Tensor:
            target = torch.full((a.batch_size(batch),), y, dtype=torch.long,
                                device=a.device)
            relabelled = a.with_labels(batch, target)
            with torch.no_grad():
                weight = torch.exp(-a.per_example_loss(relabelled)).sqrt()
            return weight * a.per_example_loss(relabelled)

        part = squared_grads(adapter, dataset, names=names, collate_fn=collate_fn,
                             batch_size=batch_size, loss_fn=loss_fn)
        total = part if total is None else total + part
    assert total is not None
    return total / len(dataset)


def classifier_classes(adapter: ModelAdapter, strategy: str, why: str) -> int:
    """The adapter's class count, or an error saying ``strategy`` needs a classifier."""
    missing = [a for a in ("labels", "with_labels") if not callable(getattr(adapter, a, None))]
    num_classes = None
    if not missing:
        try:
            num_classes = int(adapter.num_classes)  # type: ignore[attr-defined]
        except (AttributeError, NotImplementedError, IncompatibleComponentError,
                TypeError, ValueError):
            missing.append("num_classes")
    if missing or num_classes is None or num_classes < 2:
        what = ", ".join(missing) or "num_classes >= 2"
        raise IncompatibleComponentError(
            f"strategy '{strategy}' {why}, so it needs a classification model adapter "
            f"(labels, with_labels and num_classes); model '{adapter.name}' (modalities "
            f"{', '.join(adapter.modalities)}) lacks {what}. Use the 'classifier' adapter, or "
            "a generic strategy (gradient_ascent, gradient_difference, ssd, l1_sparse) that "
            "only needs a per-example loss.")
    return num_classes


@contextmanager
def masked_gradients(adapter: ModelAdapter, masks: dict[str, torch.Tensor]
                     ) -> Iterator[None]:
    """While open, every gradient of a named parameter is multiplied by its 0/1 mask.

    Hooks on the parameters (``Tensor.register_hook``), removed on exit, so the shared
    training loop runs unchanged and optimizer steps see only the masked gradients.
    """
    params = dict(adapter.model.named_parameters())
    handles = []
    try:
        for name, mask in masks.items():
            m = mask.to(device=params[name].device, dtype=params[name].dtype)
            handles.append(params[name].register_hook(lambda g, m=m: g * m))
        yield
    finally:
        for handle in handles:
            handle.remove()


def masked_unlearn(strategy: LossStrategy, adapter: ModelAdapter, data: UnlearnData,
                   run: RunContext) -> History:
    """``strategy.prepare`` (which sets ``strategy.masks``), then the shared training loop
    with every gradient multiplied by those masks (:func:`masked_gradients`)."""
    from erasus.training import train_loop

    strategy.prepare(adapter, data, run)
    masks = getattr(strategy, "masks", None)
    assert masks is not None, f"{strategy.name}: prepare() must set the masks"
    with masked_gradients(adapter, masks):
        return train_loop(strategy, adapter, data, run)
