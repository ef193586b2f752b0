"""Shared machinery of the gradient- and loss-based scoring selectors (influence, tracin,
gradient_norm, grad_match, el2n, representer): the forget data, a named target set, the
training record's checkpoints (loaded into a clone), classifier outputs, ranking.

Private to the built-in selectors; not a public API.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import Field

from erasus.errors import IncompatibleComponentError
from erasus.selection import Selection, Selector, SelectorParams

if TYPE_CHECKING:
    import numpy as np
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.record import CheckpointInfo, TrainingRecord
    from erasus.selection import SelectionContext

__all__ = [
    "CheckpointParams",
    "CheckpointScorer",
    "ScoreParams",
    "checkpoint_clones",
    "classifier_outputs",
    "forget_data",
    "optional_checkpoints",
    "rank",
    "target_data",
]


class ScoreParams(SelectorParams):
    """Parameters shared by the scoring selectors that run the model over the forget set."""

    batch_size: int = Field(
        64, ge=1, description="Examples per forward (or gradient) pass.")


class CheckpointParams(ScoreParams):
    """Scoring at the given weights or averaged over the original's training checkpoints."""

    use_checkpoints: bool = Field(
        False, description="Average the score over the checkpoints recorded while the "
        "original was trained (as the paper averages early in training) instead of "
        "scoring at the given weights; needs the training record (training_record= in "
        "the Python API), otherwise an error.")
    checkpoint_epochs: list[int] | None = Field(
        None, description="With use_checkpoints: the recorded epochs to average over "
        "(e.g. [0, 1, 2] for early training, as in the paper); null: every checkpoint.")


class CheckpointScorer(Selector):
    """A selector that scores every forget example and returns the ``budget`` highest
    scores, best first (ties to the lower position); its Params are a
    :class:`CheckpointParams`.

    Subclasses implement :meth:`score` (and may add :meth:`score_info`). The score is
    taken at the given weights, or, with ``use_checkpoints: true``, averaged over the
    original's recorded training checkpoints (restricted to ``checkpoint_epochs``), each
    loaded into a clone of the model (:func:`checkpoint_clones`). ``info`` says where:
    ``weights`` and, for checkpoints, ``checkpoint_epochs``.
    """

    def runtime_needs(self) -> frozenset[str]:
        """Adds ``training_checkpoints`` when ``use_checkpoints`` is on."""
        needs = set(type(self).needs)
        if getattr(self.params, "use_checkpoints", False):
            needs.add("training_checkpoints")
        return frozenset(needs)

    def score(self, adapter: ModelAdapter, dataset: Any, collate_fn: Any) -> np.ndarray:
        """The score of every example of ``dataset`` under ``adapter``'s weights, in order."""
        raise NotImplementedError

    def score_info(self) -> dict[str, Any]:
        """What ``info`` reports about the score's settings (before where it was taken)."""
        return {}

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None, context: SelectionContext | None = None
               ) -> Selection:
        from erasus.selection import resolve_budget

        p: Any = self.params
        dataset, collate_fn = forget_data(forget, collate_fn)
        n = len(dataset)
        k = resolve_budget(p.budget, n)
        info: dict[str, Any] = {"selector": self.name, "n_forget": n, "k": k,
                                **self.score_info()}
        if p.use_checkpoints:
            record = optional_checkpoints(context, self.name)
            scores = None
            epochs = []
            for checkpoint, clone in checkpoint_clones(adapter, record, p.checkpoint_epochs,
                                                       self.name):
                values = self.score(clone, dataset, collate_fn)
                scores = values if scores is None else scores + values
                epochs.append(checkpoint.epoch)
            assert scores is not None
            scores = scores / len(epochs)
            info.update(weights="training checkpoints", checkpoint_epochs=epochs)
        else:
            scores = self.score(adapter, dataset, collate_fn)
            info["weights"] = "given model"
        indices, top = rank(scores, k, self.name)
        return Selection(indices=indices, scores=top, info=info)


def forget_data(forget: Any, collate_fn: Any) -> tuple[Any, Any]:
    """``(dataset, collate_fn)`` of a forget Dataset or DataLoader (explicit collate wins)."""
    from erasus.data import unwrap

    dataset, loader_collate, _ = unwrap(forget)
    return dataset, collate_fn or loader_collate


def target_data(name: str, *, forget: Any, context: SelectionContext | None,
                collate_fn: Any, selector: str) -> tuple[Any, Any]:
    """``(dataset, collate_fn)`` of the target set ``name``.

    ``"forget"`` is the forget set itself; ``"retain"``, ``"test"`` and any extra split
    come from the selection context (the pipeline passes every split of the benchmark;
    the Python API ``Unlearner.fit(..., splits={...})``).
    """
    from erasus.data import unwrap

    if name == "forget":
        return forget, collate_fn
    data = context.split(name) if context is not None else None
    if data is None:
        have = []
        if context is not None:
            have = [n for n in ("retain", "test") if getattr(context, n) is not None]
            have += list(context.extra)
        raise IncompatibleComponentError(
            f"selector '{selector}': target set '{name}' was not given (available: "
            f"{', '.join(['forget', *have])}); the pipeline passes the benchmark's splits, "
            "with the Python API pass them to Unlearner.fit (retain=, splits={name: ...})")
    dataset, loader_collate, _ = unwrap(data)
    if len(dataset) == 0:
        raise IncompatibleComponentError(f"selector '{selector}': target set '{name}' is empty")
    context_collate = context.collate_fn if context is not None else None
    return dataset, loader_collate or context_collate or collate_fn


def rank(scores: Any, k: int, selector: str) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, scores)`` of the ``k`` highest scores, best first (ties: lower index).

    Raises:
        IncompatibleComponentError: a score is not finite (naming the first positions).
    """
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise IncompatibleComponentError(
            f"selector '{selector}': scores of forget examples {bad[:10].tolist()} are not "
            "finite (the model's loss or gradients overflow there); check the model and "
            "data, or choose smaller parameter groups / more damping")
    order = np.argsort(-scores, kind="stable")[:k].astype(np.int64)
    return order, scores[order]


def checkpoint_clones(adapter: ModelAdapter, record: TrainingRecord,
                      epochs: list[int] | None, selector: str
                      ) -> Iterator[tuple[CheckpointInfo, ModelAdapter]]:
    """Each recorded checkpoint loaded into ONE clone of ``adapter`` (the given model is
    never touched), in training order, restricted to ``epochs`` when given."""
    checkpoints = record.checkpoints()
    if epochs is not None:
        recorded = {c.epoch for c in checkpoints}
        missing = sorted(set(epochs) - recorded)
        if missing:
            raise IncompatibleComponentError(
                f"selector '{selector}': epochs {missing} were not recorded; the record "
                f"has checkpoints after epochs {sorted(recorded)}")
        checkpoints = [c for c in checkpoints if c.epoch in set(epochs)]
    if not checkpoints:
        raise IncompatibleComponentError(
            f"selector '{selector}': the training record holds no checkpoints (it was "
            "written by a training run of 0 epochs?)")
    clone = adapter.clone()
    for checkpoint in checkpoints:
        record.load_checkpoint(checkpoint, clone)
        clone.model.eval()
        yield checkpoint, clone


def optional_checkpoints(context: SelectionContext | None, selector: str) -> TrainingRecord:
    """The context's record for ``use_checkpoints: true``; an error that says how otherwise.

    These selectors do not declare ``training_checkpoints`` in their class's ``needs``
    (checkpoints are optional for them); :meth:`CheckpointScorer.runtime_needs` adds it
    to an instance's needs when ``use_checkpoints`` is on, so ``erasus run``
    records them when it trains the original.
    """
    record = context.record if context is not None else None
    if record is None or "checkpoints" not in record.kinds:
        have = ("no training record was given" if record is None else
                f"the record given holds only {', '.join(sorted(record.kinds)) or 'nothing'}")
        raise IncompatibleComponentError(
            f"selector '{selector}' with use_checkpoints: true needs the original model's "
            f"training checkpoints ({have}). `erasus run` records them when it trains the "
            "original itself (leave model.path unset); with the Python API pass "
            "training_record=TrainingRecord(dir) with checkpoints; or set "
            "use_checkpoints: false to score at the given weights.")
    return record


def classifier_outputs(adapter: ModelAdapter, dataset: Any, *, collate_fn: Any,
                       batch_size: int, selector: str, features: bool = False
                       ) -> dict[str, torch.Tensor]:
    """``adapter.outputs`` over ``dataset`` in dataset order (eval mode, no gradients):
    ``logits`` ``[n, C]``, ``labels`` ``[n]`` (and ``features`` ``[n, d]``), on the CPU.

    Raises:
        IncompatibleComponentError: the adapter gives no class logits and labels.
    """
    import torch

    from erasus.data import index_loader

    model = adapter.model
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    try:
        loader = index_loader(dataset, batch_size=batch_size, collate_fn=collate_fn,
                              min_batch_size=adapter.min_batch_size)
        with torch.no_grad():
            for indices, raw in loader:
                batch = adapter.prepare_batch(raw)
                batch["index"] = indices.to(adapter.device)
                out = adapter.outputs(batch, features=features)
                wanted = ("logits", "labels", "features") if features else ("logits",
                                                                            "labels")
                missing = [key for key in wanted if key not in out]
                if missing:
                    raise IncompatibleComponentError(
                        f"selector '{selector}' needs class logits and labels"
                        f"{' and features' if features else ''} from the model, but "
                        f"'{adapter.name}' gives no {', '.join(missing)}; use it with a "
                        "classification adapter, or choose a loss/gradient selector "
                        "(gradient_norm, influence)")
                for key in wanted:
                    parts.setdefault(key, []).append(out[key].detach().cpu())
    finally:
        model.train(was_training)
    result = {key: torch.cat(values) for key, values in parts.items()}
    logits, labels = result["logits"], result["labels"]
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise IncompatibleComponentError(
            f"selector '{selector}' needs one logit vector and one class label per example; "
            f"'{adapter.name}' gives logits of shape {tuple(logits.shape)} and labels of "
            f"shape {tuple(labels.shape)}")
    result["logits"] = logits.double()
    result["labels"] = labels.long()
    if features:
        result["features"] = result["features"].reshape(len(labels), -1).double()
    return result


