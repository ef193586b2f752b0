"""What the LLM metrics share: per-split output names and the TOFU paper citation."""

from __future__ import annotations

from typing import Any, ClassVar

from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Metric, MetricParams
from pydantic import Field, field_validator

from erasus_llm.causal_lm import TOFU

__all__ = ["TOFU", "SplitMetric", "SplitMetricParams", "check_adapter"]


def check_adapter(metric: Metric, adapter: Any, why: str) -> None:
    """Raise unless ``adapter`` is one of the adapters ``metric`` declares it runs on."""
    only = tuple(getattr(metric, "adapters", ()) or ())
    got = getattr(adapter, "name", type(adapter).__name__)
    if only and got not in only:
        raise IncompatibleComponentError(
            f"metric '{metric.name}' {why}, so it runs on model "
            f"{' or '.join(repr(a) for a in only)} only; got '{got}'")


class SplitMetricParams(MetricParams):
    """Parameters of a metric computed on each of a list of splits."""

    splits: list[str] = Field(default_factory=lambda: ["forget"], min_length=1,
                              description="Splits to compute the metric on; each gets its "
                              "own values, named '<split>_<value>'.")

    @field_validator("splits")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"splits repeat: {value}")
        return value


class SplitMetric(Metric):
    """A model-scope metric whose values are ``<split>_<suffix>`` for each listed split.

    ``outputs`` on the class are those of the default splits; an instance's are those of
    its own ``splits``.
    """

    Params: ClassVar[type[MetricParams]] = SplitMetricParams
    suffixes: ClassVar[tuple[str, ...]] = ()
    modalities = ("text",)
    needs = frozenset()
    scope = "model"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.outputs = tuple(f"{split}_{suffix}"  # type: ignore[misc]
                             for split in self.params.splits for suffix in self.suffixes)
