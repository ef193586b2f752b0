"""What the robustness metrics share: re-evaluating listed metrics on an attacked copy."""

from __future__ import annotations

from typing import Any, ClassVar

from erasus.config import ComponentSection
from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric, MetricParams
from pydantic import Field, field_validator

__all__ = ["AttackedReevaluation", "ReevaluationParams"]


def _name(item: str | ComponentSection) -> str:
    return item if isinstance(item, str) else item.name


def _metric_classes() -> dict[str, type[Metric]]:
    from erasus_llm.metrics import METRICS

    return {m.name: m for m in METRICS if m.scope == "model"}


class ReevaluationParams(MetricParams):
    """Parameters every robustness re-evaluation takes."""

    metrics: list[str | ComponentSection] = Field(
        default_factory=lambda: ["answer_prob", "truth_ratio"], min_length=1,
        description="The LLM model-scope metrics recomputed on the attacked model: names, "
        "or {name: ..., <its parameters>} as in a run's metrics list.")
    roles: list[str] = Field(default_factory=lambda: ["unlearned"], min_length=1,
                             description="Models attacked: unlearned, original, oracle.")

    @field_validator("metrics")
    @classmethod
    def _known(cls, value: list[str | ComponentSection]) -> list[str | ComponentSection]:
        known = _metric_classes()
        bad = [_name(v) for v in value if _name(v) not in known]
        if bad:
            raise ValueError(f"not an LLM model-scope metric: {', '.join(bad)}; choose from "
                             f"{', '.join(sorted(known))}")
        return value


class AttackedReevaluation(Metric):
    """A run metric: attack a copy of each ``roles`` model, recompute ``metrics`` on it.

    Values are ``<prefix>_<value>`` for the unlearned model and
    ``<prefix>_<role>_<value>`` for the others; the original models are left untouched.
    """

    Params: ClassVar[type[MetricParams]] = ReevaluationParams
    modalities = ("text",)
    needs = frozenset()
    scope = "run"

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        known = _metric_classes()
        self.members = []
        for item in self.params.metrics:
            cls = known[_name(item)]
            params = {} if isinstance(item, str) else item.params
            self.members.append(cls(cls.Params(**params)))
        self.outputs = tuple(  # type: ignore[misc]
            self._key(role, out) for role in self.params.roles
            for m in self.members for out in m.outputs)

    def prefix(self) -> str:
        raise NotImplementedError

    def attack(self, adapter: Any, ctx: Any) -> None:
        """Change ``adapter`` (a copy) in place."""
        raise NotImplementedError

    def _key(self, role: str, out: str) -> str:
        return f"{self.prefix()}_{out}" if role == "unlearned" else \
            f"{self.prefix()}_{role}_{out}"

    def compute(self, ctx: Any) -> Measurement:
        from erasus.evaluation import EvalContext

        values: dict[str, float] = {}
        details: dict[str, Any] = {}
        for role in self.params.roles:
            source = ctx.context(role, self.name)
            if source.splits is None:
                raise IncompatibleComponentError(f"metric '{self.name}' needs the splits")
            attacked = source.adapter.clone()
            self.attack(attacked, source)
            actx = EvalContext(attacked, source.splits, role=f"{role}_{self.prefix()}",
                               batch_size=source.batch_size)
            for member in self.members:
                m = member.compute(actx)
                m = m if isinstance(m, Measurement) else Measurement(values=dict(m))
                values.update({self._key(role, k): v for k, v in m.values.items()})
                details.setdefault(role, {})[member.name] = m.details
            details.setdefault(role, {})["forward_passes"] = actx.forward_passes
            del attacked, actx
        return Measurement(values=values, details=details)
