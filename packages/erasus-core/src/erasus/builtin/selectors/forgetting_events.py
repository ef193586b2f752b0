"""Forgetting events: rank forget examples by how often training forgot them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.selection import Selection, Selector, SelectorParams, resolve_budget

if TYPE_CHECKING:
    import numpy as np

    from erasus.adapters import ModelAdapter
    from erasus.selection import SelectionContext

__all__ = ["ForgettingEventsParams", "ForgettingEventsSelector", "forgetting_counts"]


class ForgettingEventsParams(SelectorParams):
    """Parameters of the forgetting-events selector."""

    prefer: Literal["most", "least"] = Field(
        "most", description="Select the most forgettable examples (the most forgetting "
        "events; never-learned ones first) or the least forgettable (unforgettable ones "
        "first).")


def forgetting_counts(correctness: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-example forgetting events from a ``[epochs, n]`` correctness table.

    Entries are 1 (classified correctly when presented), 0 (wrongly) or -1 (not presented
    that epoch); -1 entries are skipped, so transitions are counted between consecutive
    presentations. Returns ``(events, learned, presented)``: the number of 1 -> 0
    transitions of each example, whether it was ever classified correctly, and how many
    times it was presented.
    """
    import numpy as np

    table = np.asarray(correctness)
    if table.ndim != 2:
        raise ValueError(f"correctness must be [epochs, n], got shape {table.shape}")
    n = table.shape[1]
    events = np.zeros(n, dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)  # outcome of the previous presentation
    for row in table.astype(np.int64):
        seen = row >= 0
        events += (seen & (last == 1) & (row == 0)).astype(np.int64)
        last = np.where(seen, row, last)
    learned = (table == 1).any(axis=0)
    presented = (table >= 0).sum(axis=0).astype(np.int64)
    return events, learned, presented


class ForgettingEventsSelector(Selector):
    """Rank forget examples by their forgetting events during the original's training.

    Toneva et al. (2019): a *forgetting event* is an example going from classified
    correctly to misclassified between two consecutive presentations during training;
    examples never classified correctly count as forgotten infinitely often. The scores
    come from the training record's per-example correctness table
    (``record.correctness()``: ``[epochs, n_train]``, 1 correct / 0 wrong / -1 not
    presented, taken on each example's minibatch as it was presented, as in the paper);
    each forget position maps to its training index through
    ``context.forget_train_indices``. An example's score is its number of 1 -> 0
    transitions over its presentations, and ``epochs + 1`` (more than any count can reach)
    when it was never learned. ``prefer: most`` selects the highest scores (the
    most-forgettable, mislabelled or atypical examples), ``least`` the lowest (scores are
    negated: the unforgettable examples); ties are broken by a shuffle seeded by the
    seed. ``info`` holds every forget example's count (-1 for never learned).

    Needs the training record with ``correctness``, which Erasus records when it trains a
    classification original itself; without one this raises an error saying how to get it.
    """

    name = "forgetting_events"
    modalities = ("classification",)
    needs = frozenset({"training_correctness"})
    Params = ForgettingEventsParams
    paper = Paper(
        title="An Empirical Study of Example Forgetting during Deep Neural Network Learning",
        authors="Mariya Toneva, Alessandro Sordoni, Remi Tachet des Combes, Adam Trischler, "
        "Yoshua Bengio, Geoffrey J. Gordon",
        year=2019,
        url="https://arxiv.org/abs/1812.05159",
        venue="ICLR",
    )

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None, context: SelectionContext | None = None
               ) -> Selection:
        import numpy as np

        from erasus.builtin.selectors._valuation import ranked
        from erasus.data import unwrap
        from erasus.record import require_record

        dataset, _, _ = unwrap(forget)
        n = len(dataset)
        record = require_record(context.record if context is not None else None,
                                "correctness", f"selector {self.name}")
        assert context is not None
        train_idx = context.forget_train_indices
        if train_idx is None or len(train_idx) != n:
            got = "none" if train_idx is None else f"{len(train_idx)}"
            raise IncompatibleComponentError(
                f"selector '{self.name}' needs the training-set index of each of the {n} "
                f"forget examples (forget_train_indices; got {got}) to look them up in the "
                "training record; the pipeline passes them, with the Python API give "
                "Unlearner.fit(..., forget_train_indices=[...])")
        table = record.correctness()
        train_idx_arr = np.asarray(train_idx, dtype=np.int64)
        if table.ndim != 2 or train_idx_arr.min(initial=0) < 0 \
                or train_idx_arr.max(initial=-1) >= table.shape[1]:
            raise IncompatibleComponentError(
                f"selector '{self.name}': forget_train_indices reach "
                f"{int(train_idx_arr.max(initial=-1))}, but the record's correctness table "
                f"has shape {table.shape} (it was made on another training set)")
        events, learned, presented = forgetting_counts(table[:, train_idx_arr])
        unseen = np.flatnonzero(presented == 0)
        if unseen.size:
            raise IncompatibleComponentError(
                f"selector '{self.name}': forget examples at positions "
                f"{unseen[:10].tolist()} were never presented in the recorded training, so "
                "they have no forgetting statistics; the record belongs to another training "
                "set or forget_train_indices are wrong")
        epochs = table.shape[0]
        score = np.where(learned, events, epochs + 1).astype(np.float64)
        prefer = self.params.prefer  # type: ignore[attr-defined]
        if prefer == "least":
            score = -score
        k = resolve_budget(self.params.budget, n)  # type: ignore[attr-defined]
        chosen = ranked(score, k, seed)
        return Selection(
            indices=chosen, scores=score[chosen],
            info={"selector": self.name, "n_forget": n, "k": k, "prefer": prefer,
                  "epochs": int(epochs),
                  "forgetting_events": [int(e) if ok else -1
                                        for e, ok in zip(events, learned, strict=True)],
                  "never_learned": int((~learned).sum())})
