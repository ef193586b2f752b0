"""Metric base class and the shared evaluation context.

Metrics compute named numbers from an :class:`EvalContext`. Forward passes are the
expensive part, so the context runs each (model, split) through the adapter once and
caches the per-example outputs (losses, logits, labels, features) for every metric.

Per-model metrics (``scope = "model"``) run once for each evaluated model (original,
unlearned, oracle); run metrics (``scope = "run"``) run once afterwards and see every
model's results, the run's timings (Avg. Gap, time, memory) and each model's context
(feature distances between models).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from erasus.components import Component, Params

if TYPE_CHECKING:
    import numpy as np

    from erasus.adapters import ModelAdapter
    from erasus.data import Splits

__all__ = [
    "ROLES",
    "EvalContext",
    "Measurement",
    "Metric",
    "MetricParams",
    "RunEvalContext",
]

#: The models a run evaluates, in report order.
ROLES = ("original", "unlearned", "oracle")


class MetricParams(Params):
    """Parameters every metric accepts."""


@dataclass
class Measurement:
    """Scalar values under the metric's declared names, plus optional details (curves...)."""

    values: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


class Metric(Component):
    """Base class of metrics: set ``outputs`` (the value names) and implement ``compute``."""

    Params: ClassVar[type[Params]] = MetricParams
    outputs: ClassVar[tuple[str, ...]] = ()
    scope: ClassVar[str] = "model"
    #: Metrics whose values a run metric reads (they are computed first).
    requires: ClassVar[tuple[str, ...]] = ()

    def compute(self, ctx: Any) -> Measurement | dict[str, float]:
        raise NotImplementedError


class EvalContext:
    """One model and the benchmark's splits, with cached forward passes."""

    def __init__(self, adapter: ModelAdapter, splits: Splits, *, role: str = "unlearned",
                 batch_size: int = 256) -> None:
        self.adapter = adapter
        self.splits = splits
        self.role = role
        self.batch_size = batch_size
        self._cache: dict[tuple[str, bool], dict[str, np.ndarray]] = {}
        self.forward_passes = 0

    def outputs(self, split: str, *, features: bool = False) -> dict[str, np.ndarray]:
        """Per-example outputs of the model on ``split`` (computed once, then cached)."""
        key = (split, features)
        if key in self._cache:
            return self._cache[key]
        if not features and (split, True) in self._cache:
            return self._cache[(split, True)]
        import numpy as np
        import torch
        from torch.utils.data import Subset

        from erasus import distributed
        from erasus.data import index_loader

        dataset = self.splits.get(split)
        # data-parallel under torchrun: this process runs its share, then all are gathered
        lo, hi = distributed.share(len(dataset), self.adapter.min_batch_size)
        if (lo, hi) != (0, len(dataset)):
            dataset = Subset(dataset, range(lo, hi))
        loader = index_loader(dataset, batch_size=self.batch_size,
                              collate_fn=self.splits.collate_fn,
                              min_batch_size=self.adapter.min_batch_size)
        model = self.adapter.model
        was_training = model.training
        model.eval()
        chunks: dict[str, list[np.ndarray]] = {}
        with torch.no_grad():
            for indices, raw in loader:
                indices = indices + lo
                batch = self.adapter.prepare_batch(raw)
                # as in training: adapters with per-example randomness (diffusion noise)
                # can key it on the example's index, so every model sees the same draws
                batch["index"] = indices.to(self.adapter.device)
                out = self.adapter.outputs(batch, features=features)
                self.forward_passes += 1
                out["index"] = indices
                for name, value in out.items():
                    value = value.detach()
                    if value.is_floating_point():
                        value = value.float()
                    chunks.setdefault(name, []).append(value.cpu().numpy())
        model.train(was_training)
        if distributed.world_size() > 1:
            shares = [c for c in distributed.gather(chunks) if c]
            chunks = {name: [a for c in shares for a in c[name]] for name in shares[0]}
        result = {name: np.concatenate(parts) for name, parts in chunks.items()}
        self._cache[key] = result
        return result


@dataclass
class RunEvalContext:
    """Every evaluated model's values and the run's facts, for run-scope metrics.

    ``contexts`` holds the :class:`EvalContext` of each evaluated model by role (the
    pipeline passes the ones its model-scope metrics used), so a run metric that compares
    models (feature distances) reuses their cached forward passes.
    """

    results: dict[str, dict[str, float]]
    run_info: dict[str, Any]
    splits: Splits | None = None
    contexts: dict[str, EvalContext] = field(default_factory=dict)

    def context(self, role: str, metric: str) -> EvalContext:
        """The evaluation context of the ``role`` model; a clear error when there is none."""
        from erasus.errors import IncompatibleComponentError

        ctx = self.contexts.get(role)
        if ctx is None:
            have = ", ".join(sorted(self.contexts)) or "none"
            hint = (" (set oracle: {strategy: retrain} or oracle.path)" if role == "oracle"
                    else "")
            raise IncompatibleComponentError(
                f"metric '{metric}' needs the {role} model, but this evaluation has no "
                f"{role} model{hint}; models evaluated: {have}")
        return ctx
