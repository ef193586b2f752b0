"""Shared plumbing of the data-valuation and outlier selectors (not a component).

``forgetting_events``, ``data_shapley``, ``valuation_network`` and ``upcore`` all read
per-example representations through the adapter and rank examples by a score; this
module holds that reading and the seeded top-k, so each selector module is only its
algorithm. ``data_shapley`` and ``valuation_network`` also share the reading of labelled
forget and validation features (:func:`labelled_features`) and the selection of the
highest or lowest values (:func:`select_by_value`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from erasus.errors import IncompatibleComponentError

if TYPE_CHECKING:
    import numpy as np

    from erasus.adapters import ModelAdapter
    from erasus.selection import Selection, SelectionContext

__all__ = ["LabelledFeatures", "embed", "labelled_features", "ranked", "select_by_value",
           "validation_split"]


def embed(adapter: ModelAdapter, dataset: Any, collate_fn: Any, *, labels: bool = False,
          component: str = "selector", batch_size: int = 256
          ) -> tuple[np.ndarray, np.ndarray | None]:
    """``(features [n, d] float64, labels [n] int64 or None)`` of ``dataset`` in order.

    Features are ``adapter.outputs(batch, features=True)["features"]``: the adapter's
    per-example representation (a classifier's penultimate activations, a language model's
    mean-pooled last hidden state...). The model runs in eval mode without gradients and
    its weights are untouched; ``batch["index"]`` holds dataset positions, as in
    evaluation, so adapters with per-example noise (diffusion) draw it reproducibly.
    """
    import numpy as np
    import torch

    from erasus.data import index_loader

    if dataset is None or len(dataset) == 0:
        raise IncompatibleComponentError(f"'{component}' got an empty data set to embed")
    model = adapter.model
    was_training = model.training
    model.eval()
    feats: list[np.ndarray] = []
    labs: list[np.ndarray] = []
    try:
        with torch.no_grad():
            for indices, raw in index_loader(dataset, batch_size=batch_size,
                                             collate_fn=collate_fn,
                                             min_batch_size=adapter.min_batch_size):
                batch = adapter.prepare_batch(raw)
                batch["index"] = indices.to(adapter.device)
                out = adapter.outputs(batch, features=True)
                if "features" not in out:
                    raise IncompatibleComponentError(
                        f"'{component}' needs per-example features, but model "
                        f"'{adapter.name}' returned none from outputs(features=True)")
                feats.append(out["features"].detach().float().reshape(
                    len(indices), -1).cpu().numpy().astype(np.float64))
                if labels:
                    if "labels" not in out:
                        raise IncompatibleComponentError(
                            f"'{component}' needs class labels, but model '{adapter.name}' "
                            "gives none in its outputs; use a classification model adapter")
                    labs.append(out["labels"].detach().cpu().numpy().astype(np.int64))
    finally:
        model.train(was_training)
    x = np.concatenate(feats)
    if not np.isfinite(x).all():
        raise IncompatibleComponentError(
            f"'{component}': model '{adapter.name}' gave non-finite features")
    return x, (np.concatenate(labs) if labels else None)


def validation_split(context: SelectionContext | None, name: str, component: str) -> Any:
    """The split ``name`` of the selection context, or an error saying how to pass it."""
    data = context.split(name) if context is not None else None
    if data is None or len(data) == 0:
        have = []
        if context is not None:
            have = [s for s in ("retain", "test", *sorted(context.extra))
                    if context.split(s) is not None]
        raise IncompatibleComponentError(
            f"'{component}' measures utility on the '{name}' split, which was not given "
            f"(available: {', '.join(have) or 'none'}); the pipeline passes the benchmark's "
            f"retain/test splits, the Python API takes Unlearner.fit(..., test=...) or "
            f"splits={{'{name}': ...}}, or set the selector's 'validation' parameter")
    return data


def ranked(scores: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Positions of the ``k`` highest scores, best first; ties broken by a seeded shuffle."""
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64)
    tiebreak = np.random.default_rng(int(seed)).permutation(len(scores))
    order = np.lexsort((tiebreak, -scores))
    return order[:k].astype(np.int64)


class LabelledFeatures(NamedTuple):
    """Features and labels of the forget set and of a validation split."""

    x: np.ndarray
    """Forget features ``[n, d]``."""
    y: np.ndarray
    """Forget labels ``[n]``."""
    xv: np.ndarray
    """Validation features ``[m, d]``."""
    yv: np.ndarray
    """Validation labels ``[m]``."""
    num_classes: int
    """The largest label + 1, or the context's ``info.num_classes`` when that is larger."""


def labelled_features(adapter: ModelAdapter, forget: Any, collate_fn: Any,
                      context: SelectionContext | None, validation: str, component: str
                      ) -> LabelledFeatures:
    """:func:`embed` (with labels) of the forget set and of the context's ``validation``
    split (:func:`validation_split`); each set uses its own collate function first."""
    from erasus.data import unwrap

    dataset = unwrap(forget)[0]
    val = unwrap(validation_split(context, validation, component))[0]
    ctx_collate = context.collate_fn if context is not None else None
    x, y = embed(adapter, dataset, collate_fn or ctx_collate, labels=True, component=component)
    xv, yv = embed(adapter, val, ctx_collate or collate_fn, labels=True, component=component)
    assert y is not None and yv is not None
    num_classes = max(int(max(y.max(), yv.max())) + 1,
                      int(getattr(getattr(context, "info", None), "num_classes", None) or 0))
    return LabelledFeatures(x, y, xv, yv, num_classes)


def select_by_value(component: str, values: np.ndarray, *, prefer: str, budget: Any,
                    seed: int, **info: Any) -> Selection:
    """The ``budget`` forget examples with the highest ``values`` (``prefer: high``) or the
    lowest (``low``), best first, scored by the value (negated for ``low``); ``info`` holds
    the selector's name, sizes and ``prefer``, then ``info``, then every example's value."""
    import numpy as np

    from erasus.selection import Selection, resolve_budget

    values = np.asarray(values, dtype=np.float64)
    score = values if prefer == "high" else -values
    n = len(values)
    k = resolve_budget(budget, n)
    chosen = ranked(score, k, seed)
    return Selection(
        indices=chosen, scores=score[chosen],
        info={"selector": component, "n_forget": n, "k": k, "prefer": prefer, **info,
              "values": [float(v) for v in values]})
