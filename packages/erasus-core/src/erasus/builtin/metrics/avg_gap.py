"""Avg. Gap: mean absolute distance to the retrained oracle over UA, RA, TA and MIA-efficacy."""

from __future__ import annotations

from typing import Any

from erasus.builtin._papers import FAN_2024
from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric, MetricParams

__all__ = ["GAP_KEYS", "AvgGap", "avg_gap"]

#: The per-model values the gap averages over, in the SalUn paper's order.
GAP_KEYS = ("UA", "RA", "TA", "MIA_efficacy")


def avg_gap(values: dict[str, float], oracle: dict[str, float]) -> tuple[float, dict[str, float]]:
    """The mean of ``|values[k] - oracle[k]|`` over :data:`GAP_KEYS`, and each term."""
    gaps = {k: abs(float(values[k]) - float(oracle[k])) for k in GAP_KEYS}
    return sum(gaps.values()) / len(gaps), gaps


class AvgGap(Metric):
    """Avg. Gap to the oracle: mean of |unlearned - oracle| over UA, RA, TA, MIA-efficacy.

    A run metric: it reads the ``accuracy`` and ``mia_efficacy`` values of the unlearned
    model and of the oracle (the model retrained without the forget set) and reports
    ``avg_gap`` = mean of the four absolute differences, in percentage points (0 is
    ideal). The details hold each term and the original model's gap for comparison.
    """

    name = "avg_gap"
    modalities = ("classification",)
    needs = frozenset({"oracle"})
    Params = MetricParams
    paper = FAN_2024
    outputs = ("avg_gap",)
    scope = "run"
    requires = ("accuracy", "mia_efficacy")

    def compute(self, ctx: Any) -> Measurement:
        results: dict[str, dict[str, float]] = ctx.results
        oracle = results.get("oracle")
        if not oracle:
            raise IncompatibleComponentError(
                "avg_gap needs an oracle; set oracle: {strategy: retrain} (or oracle.path)")
        for role in ("unlearned", "oracle"):
            missing = [k for k in GAP_KEYS if k not in results.get(role, {})]
            if missing:
                raise IncompatibleComponentError(
                    f"avg_gap needs {', '.join(missing)} of the {role} model; add the metrics "
                    "'accuracy' and 'mia_efficacy' to the run")
        gap, terms = avg_gap(results["unlearned"], oracle)
        details: dict[str, Any] = {"gaps": terms}
        original = results.get("original")
        if original and all(k in original for k in GAP_KEYS):
            details["original_avg_gap"], details["original_gaps"] = avg_gap(original, oracle)
        return Measurement(values={"avg_gap": gap}, details=details)
