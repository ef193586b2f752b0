"""Forget quality (TOFU): KS test of the unlearned model's truth ratios against the oracle's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric, MetricParams
from pydantic import Field

from erasus_llm.metrics._base import TOFU

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ForgetQuality", "ForgetQualityParams", "forget_quality", "load_truth_ratios"]


def forget_quality(truth_ratios: Any, oracle_truth_ratios: Any) -> float:
    """The p-value of the two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``)
    between two sets of per-question truth ratios: high when they could come from the same
    distribution."""
    import numpy as np
    from scipy.stats import ks_2samp

    return float(ks_2samp(np.asarray(truth_ratios, dtype=np.float64),
                          np.asarray(oracle_truth_ratios, dtype=np.float64)).pvalue)


def load_truth_ratios(path: str | Path) -> np.ndarray:
    """Per-question truth ratios from a JSON results file.

    Accepted layouts: a list of numbers; ``{"truth_ratios": [...]}``; an Erasus
    ``metrics.json`` (the oracle's ratios a ``forget_quality`` run saved, at
    ``details.run.forget_quality.oracle_truth_ratios``); open-unlearning's TOFU results
    (``{"forget_truth_ratio": {"value_by_index": {"0": {"score": ...}, ...}}}``).
    """
    import numpy as np

    path = Path(path).expanduser()
    if not path.is_file():
        raise IncompatibleComponentError(f"metric 'forget_quality': the oracle results file "
                                         f"{path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IncompatibleComponentError(f"metric 'forget_quality': {path} is not JSON: "
                                         f"{exc}") from None
    values: Any = None
    if isinstance(data, list):
        values = data
    elif isinstance(data, dict):
        run = data.get("details", {}).get("run", {}).get("forget_quality", {}) \
            if isinstance(data.get("details"), dict) else {}
        by_index = data.get("forget_truth_ratio", {}).get("value_by_index") \
            if isinstance(data.get("forget_truth_ratio"), dict) else None
        if "truth_ratios" in data:
            values = data["truth_ratios"]
        elif isinstance(run, dict) and "oracle_truth_ratios" in run:
            values = run["oracle_truth_ratios"]
        elif isinstance(by_index, dict):
            values = [v["score"] for _, v in sorted(by_index.items(), key=lambda kv: int(kv[0]))]
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if values is None or arr.ndim != 1 or len(arr) == 0 or not np.all(np.isfinite(arr)):
        raise IncompatibleComponentError(
            f"metric 'forget_quality': {path} holds no per-question truth ratios; give a "
            "JSON list of numbers, {\"truth_ratios\": [...]}, an Erasus metrics.json with "
            "details.run.forget_quality.oracle_truth_ratios, or open-unlearning's "
            "forget_truth_ratio.value_by_index")
    return arr


class ForgetQualityParams(MetricParams):
    """Parameters of forget quality."""

    split: str = Field("forget_perturbed", description="Split whose per-question truth "
                       "ratios are compared (items with paraphrased and perturbed answers).")
    correct_field: str = Field("paraphrased_answer", description="Field of the correct "
                               "answer the truth ratio compares the perturbed answers with.")
    oracle_results: str | None = Field(
        None, description="JSON file of the oracle's per-question truth ratios on the same "
        "questions (see load_truth_ratios); used instead of an oracle model.")


class ForgetQuality(Metric):
    """Forget quality (TOFU, Maini et al. 2024): the KS-test p-value between the unlearned
    model's and the oracle's per-question truth ratios on the forget set.

    A run metric. The truth ratios (``truth_ratio``'s definition, correct answer
    ``correct_field``) come from each model's cached one-pass token statistics on
    ``split``. The oracle's come from ``oracle_results`` when it is given (a stored
    results file), else from the oracle model of the run (the model trained without the
    forget set); with neither, this raises. ``forget_quality`` is the unlearned model's
    p-value, ``forget_quality_original`` the original's (when the run has one); the
    per-question ratios of every model are in the details, the oracle's under
    ``oracle_truth_ratios`` so a later run can use this run's ``metrics.json`` as its
    ``oracle_results``. High (up to 1) means indistinguishable from the oracle.
    """

    name = "forget_quality"
    modalities = ("text",)
    needs = frozenset()
    Params = ForgetQualityParams
    paper = TOFU
    outputs = ("forget_quality", "forget_quality_original")
    scope = "run"

    def _ratios(self, ctx: Any, role: str) -> np.ndarray:
        from erasus_llm.metrics.truth_ratio import truth_ratio_values

        p: ForgetQualityParams = self.params  # type: ignore[assignment]
        return truth_ratio_values(ctx.context(role, self.name), p.split, p.correct_field,
                                  self.name)

    def compute(self, ctx: Any) -> Measurement:
        p: ForgetQualityParams = self.params  # type: ignore[assignment]
        contexts = getattr(ctx, "contexts", {}) or {}
        if p.oracle_results:
            oracle = load_truth_ratios(p.oracle_results)
            source = str(p.oracle_results)
        elif "oracle" in contexts:
            oracle = self._ratios(ctx, "oracle")
            source = "oracle model"
        else:
            raise IncompatibleComponentError(
                "metric 'forget_quality' compares with the oracle's truth ratios, but this "
                "evaluation has no oracle model and no oracle_results file; set oracle: "
                "{strategy: retrain} (or oracle.path), or forget_quality's oracle_results "
                "to a JSON file of the oracle's per-question truth ratios")
        unlearned = self._ratios(ctx, "unlearned")
        values = {"forget_quality": forget_quality(unlearned, oracle)}
        details: dict[str, Any] = {"oracle_source": source, "split": p.split,
                                   "oracle_truth_ratios": oracle.tolist(),
                                   "unlearned_truth_ratios": unlearned.tolist()}
        if "original" in contexts:
            original = self._ratios(ctx, "original")
            values["forget_quality_original"] = forget_quality(original, oracle)
            details["original_truth_ratios"] = original.tolist()
        return Measurement(values=values, details=details)
