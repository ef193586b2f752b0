"""EL2N: select the forget examples whose predicted distribution is farthest from the label."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from erasus.builtin._papers import PAUL_2021
from erasus.builtin.selectors._grad_common import (
    CheckpointParams,
    CheckpointScorer,
    classifier_outputs,
)

if TYPE_CHECKING:
    import numpy as np

    from erasus.adapters import ModelAdapter

__all__ = ["EL2N", "EL2NParams", "el2n_scores"]


class EL2NParams(CheckpointParams):
    """Parameters of EL2N selection."""


def el2n_scores(adapter: ModelAdapter, dataset: Any, *, collate_fn: Any = None,
                batch_size: int = 64, selector: str = "el2n") -> np.ndarray:
    """``|| softmax(f(x_i)) - onehot(y_i) ||_2`` of every example, in dataset order."""
    import torch

    out = classifier_outputs(adapter, dataset, collate_fn=collate_fn, batch_size=batch_size,
                             selector=selector)
    probs = torch.softmax(out["logits"], dim=1)
    onehot = torch.nn.functional.one_hot(out["labels"], probs.shape[1]).double()
    return (probs - onehot).norm(dim=1).numpy()


class EL2N(CheckpointScorer):
    """Score each forget example by its EL2N: the L2 error of the predicted distribution.

    ``score_i = || softmax(f(x_i)) - onehot(y_i) ||_2`` from the model's class logits and
    the example's label (``adapter.outputs``, eval mode). It lies in ``[0, sqrt(2)]``:
    near 0 for confidently right examples, high for hard, ambiguous or mislabelled ones.
    Paul et al. average it over networks early in training; by default it is taken at the
    given model's weights. With ``use_checkpoints: true`` it is the mean over the
    original's recorded training checkpoints (restricted to ``checkpoint_epochs``), each
    loaded into a clone of the model. The ``budget`` highest-scoring examples are
    returned, best first (ties to the lower position). Classification models only.
    """

    name = "el2n"
    modalities = ("classification",)
    needs = frozenset()
    Params = EL2NParams
    paper = PAUL_2021

    def score(self, adapter: ModelAdapter, dataset: Any, collate_fn: Any) -> np.ndarray:
        p: EL2NParams = self.params  # type: ignore[assignment]
        return el2n_scores(adapter, dataset, collate_fn=collate_fn, batch_size=p.batch_size,
                           selector=self.name)
