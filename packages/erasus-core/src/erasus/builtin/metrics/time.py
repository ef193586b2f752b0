"""Run time of the unlearning and of the oracle's retraining, their ratio (RTE), and FLOPs."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric, MetricParams

__all__ = ["Time", "TimeParams", "train_flops_per_example"]


class TimeParams(MetricParams):
    """Parameters of the time metric."""

    flops: bool = Field(True, description="Also estimate the unlearning's floating-point "
                        "operations (in the details; see the class docstring).")
    flops_examples_per_step: int | None = Field(
        None, ge=1, description="Examples one optimizer step of the unlearning processes "
        "(the strategy's batch_size x grad_accum, doubled when each step also draws a "
        "retain batch), for the FLOP estimate; None: the run's recorded "
        "'examples_per_step', else 64 (the loop's default batch size).")


def train_flops_per_example(adapter: Any, dataset: Any, collate_fn: Any = None, *,
                            batch_size: int = 16) -> float:
    """FLOPs of one forward and backward pass of the adapter's loss, per example.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplications,
    convolutions, attention: the operations it has formulas for) on the mean per-example
    loss of the first ``batch_size`` examples of ``dataset``, differentiated with respect
    to every trainable weight with ``torch.autograd.grad`` (in eval mode: neither the
    weights, their ``.grad`` nor normalisation statistics change).
    """
    import torch
    from torch.utils.data.dataloader import default_collate
    from torch.utils.flop_counter import FlopCounterMode

    n = max(min(batch_size, len(dataset)), min(adapter.min_batch_size, len(dataset)))
    if n == 0:
        raise IncompatibleComponentError("cannot count FLOPs on an empty split")
    indices = list(range(n))
    batch = adapter.prepare_batch((collate_fn or default_collate)([dataset[i] for i in indices]))
    batch["index"] = torch.tensor(indices, dtype=torch.long, device=adapter.device)
    model = adapter.model
    was_training = model.training
    model.eval()
    weights = [p for p in model.parameters() if p.requires_grad]
    try:
        with FlopCounterMode(display=False) as counter:
            loss = adapter.per_example_loss(batch).mean()
            torch.autograd.grad(loss, weights, allow_unused=True)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / n


class Time(Metric):
    """Wall-clock seconds of unlearning and of retraining the oracle, their ratio, and FLOPs.

    A run metric reading ``ctx.run_info``: ``unlearn_seconds`` (the strategy's run, the
    RTE of the SalUn protocol), ``oracle_seconds`` (the oracle's retraining) and
    ``rte_ratio = unlearn_seconds / oracle_seconds`` (below 1: cheaper than retraining).
    All three are always reported, so the metric needs a timed oracle: with ``oracle:
    null`` (or an oracle whose training time is unknown) it raises rather than report a
    NaN. The unlearning time alone is in every run summary's timings.

    FLOPs (``flops: true``), in the details under ``flops``: when the run recorded
    ``unlearn_flops`` it is reported as is; otherwise it is estimated as
    ``train_flops_per_example x examples_per_step x steps``, where the per-example
    forward+backward FLOPs of the unlearned model's training loss are counted with
    ``torch.utils.flop_counter.FlopCounterMode`` on a batch of the forget split (see
    :func:`train_flops_per_example`), ``steps`` is the run's optimizer step count and
    ``examples_per_step`` is ``flops_examples_per_step``, else the run's recorded
    ``examples_per_step``, else 64 (the details say which). The estimate covers the
    model's own loss; extra forward passes a strategy makes (a frozen teacher's, say)
    are not in it. Where FLOPs cannot be counted (no evaluated
    model in the context, an operation the counter does not handle) the details say why.
    """

    name = "time"
    modalities = ("any",)
    needs = frozenset({"oracle"})
    Params = TimeParams
    paper = None
    outputs = ("unlearn_seconds", "oracle_seconds", "rte_ratio")
    scope = "run"

    def compute(self, ctx: Any) -> Measurement:
        info: dict[str, Any] = ctx.run_info
        if info.get("unlearn_seconds") is None:
            raise IncompatibleComponentError(
                "metric 'time' found no 'unlearn_seconds' in the run information; it must run "
                "inside a pipeline run that timed the unlearning")
        if info.get("oracle_seconds") is None:
            raise IncompatibleComponentError(
                "metric 'time' compares unlearning with retraining, but the run has no "
                "oracle training time ('oracle_seconds'); set oracle: {strategy: retrain}, or "
                "drop 'time' (the unlearning time is in the run summary's timings)")
        unlearn = float(info["unlearn_seconds"])
        oracle = float(info["oracle_seconds"])
        if oracle <= 0:
            raise IncompatibleComponentError(
                f"metric 'time': oracle_seconds is {oracle}, so no time ratio can be formed")
        details: dict[str, Any] = {}
        p: TimeParams = self.params  # type: ignore[assignment]
        if p.flops:
            details["flops"] = self._flops(ctx, p)
        return Measurement(values={"unlearn_seconds": unlearn, "oracle_seconds": oracle,
                                   "rte_ratio": unlearn / oracle}, details=details)

    @staticmethod
    def _flops(ctx: Any, p: TimeParams) -> dict[str, Any]:
        info: dict[str, Any] = ctx.run_info
        if info.get("unlearn_flops") is not None:
            return {"unlearn_flops": float(info["unlearn_flops"]), "source": "recorded"}
        contexts = getattr(ctx, "contexts", None) or {}
        model_ctx = contexts.get("unlearned")
        if model_ctx is None or ctx.splits is None:
            return {"unavailable": "no unlearned model in the evaluation context to count on"}
        if info.get("steps") is None:
            return {"unavailable": "the run recorded no optimizer step count ('steps')"}
        try:
            per_example = train_flops_per_example(model_ctx.adapter, ctx.splits.forget,
                                                  ctx.splits.collate_fn)
        except Exception as exc:  # reported in the details; the timings stand
            return {"unavailable": f"FLOP counting failed: {type(exc).__name__}: {exc}"}
        if per_example <= 0:
            return {"unavailable": "FlopCounterMode counted no operation of this model"}
        if p.flops_examples_per_step is not None:
            examples, origin = p.flops_examples_per_step, "parameter"
        elif info.get("examples_per_step") is not None:
            examples, origin = int(info["examples_per_step"]), "run"
        else:
            examples, origin = 64, "default (64)"
        per_step = per_example * examples
        steps = float(info["steps"])
        return {"source": "estimated", "train_flops_per_example": per_example,
                "examples_per_step": examples, "examples_per_step_from": origin,
                "flops_per_step": per_step, "steps": steps, "unlearn_flops": per_step * steps}
