"""EL2N: select the forget examples whose predicted distribution is farthest from the label."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from erasus.builtin.selectors._grad_common import (
    CheckpointParams,
    checkpoint_clones,
    checkpoint_needs,
    classifier_outputs,
    forget_data,
    optional_checkpoints,
    rank,
)
from erasus.components import Paper
from erasus.selection import Selection, SelectionContext, Selector, resolve_budget

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


class EL2N(Selector):
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
    paper = Paper(
        title="Deep Learning on a Data Diet: Finding Important Examples Early in Training",
        authors="Mansheej Paul, Surya Ganguli, Gintare Karolina Dziugaite",
        year=2021,
        url="https://arxiv.org/abs/2107.07075",
        venue="NeurIPS",
    )

    def runtime_needs(self) -> frozenset[str]:
        """Adds ``training_checkpoints`` when ``use_checkpoints`` is on."""
        return checkpoint_needs(self)

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None, context: SelectionContext | None = None
               ) -> Selection:
        p: EL2NParams = self.params  # type: ignore[assignment]
        dataset, collate_fn = forget_data(forget, collate_fn)
        n = len(dataset)
        k = resolve_budget(p.budget, n)
        info: dict[str, Any] = {"selector": self.name, "n_forget": n, "k": k}
        if p.use_checkpoints:
            record = optional_checkpoints(context, self.name)
            scores = None
            epochs = []
            for checkpoint, clone in checkpoint_clones(adapter, record, p.checkpoint_epochs,
                                                       self.name):
                values = el2n_scores(clone, dataset, collate_fn=collate_fn,
                                     batch_size=p.batch_size, selector=self.name)
                scores = values if scores is None else scores + values
                epochs.append(checkpoint.epoch)
            assert scores is not None
            scores = scores / len(epochs)
            info.update(weights="training checkpoints", checkpoint_epochs=epochs)
        else:
            scores = el2n_scores(adapter, dataset, collate_fn=collate_fn,
                                 batch_size=p.batch_size, selector=self.name)
            info["weights"] = "given model"
        indices, top = rank(scores, k, self.name)
        return Selection(indices=indices, scores=top, info=info)
