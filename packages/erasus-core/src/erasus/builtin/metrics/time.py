"""Run time of the unlearning and of the oracle's retraining, and their ratio (RTE)."""

from __future__ import annotations

from typing import Any

from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric, MetricParams

__all__ = ["Time"]


class Time(Metric):
    """Wall-clock seconds of unlearning and of retraining the oracle, and their ratio.

    A run metric reading ``ctx.run_info``: ``unlearn_seconds`` (the strategy's run, the
    RTE of the SalUn protocol), ``oracle_seconds`` (the oracle's retraining) and
    ``rte_ratio = unlearn_seconds / oracle_seconds`` (below 1: cheaper than retraining).
    All three are always reported, so the metric needs a timed oracle: with ``oracle:
    null`` (or an oracle whose training time is unknown) it raises rather than report a
    NaN. The unlearning time alone is in every run summary's timings.
    """

    name = "time"
    modalities = ("any",)
    needs = frozenset({"oracle"})
    Params = MetricParams
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
        return Measurement(values={"unlearn_seconds": unlearn, "oracle_seconds": oracle,
                                   "rte_ratio": unlearn / oracle})
