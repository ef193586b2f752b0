"""Shared plumbing of the data-valuation and outlier selectors (not a component).

``forgetting_events``, ``data_shapley``, ``valuation_network`` and ``upcore`` all read
per-example representations through the adapter and rank examples by a score; this
module holds that reading and the seeded top-k, so each selector module is only its
algorithm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from erasus.errors import IncompatibleComponentError

if TYPE_CHECKING:
    import numpy as np

    from erasus.adapters import ModelAdapter
    from erasus.selection import SelectionContext

__all__ = ["embed", "ranked", "validation_split"]


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
