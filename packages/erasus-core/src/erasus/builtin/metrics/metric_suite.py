"""One metric that computes a list of metrics from one shared, cached evaluation context."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from erasus.config import ComponentSection
from erasus.errors import IncompatibleComponentError
from erasus.evaluation import Measurement, Metric, MetricParams

if TYPE_CHECKING:
    from erasus.registry import Registry

__all__ = ["MetricSuite", "MetricSuiteParams"]

_DEFAULT = ("loss", "mia")


class MetricSuiteParams(MetricParams):
    """Parameters of the metric suite."""

    metrics: list[str | ComponentSection] = Field(
        default_factory=lambda: list(_DEFAULT),
        description="The model-scope metrics to compute, in order, as in a run's metrics: "
        "list: a registry name, or {name: ..., <its parameters>}.")

    @field_validator("metrics")
    @classmethod
    def _names(cls, value: list[str | ComponentSection]) -> list[str | ComponentSection]:
        if not value:
            raise ValueError("list at least one metric")
        names = [_name(item) for item in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metrics listed twice: {', '.join(dupes)}")
        if "metric_suite" in names:
            raise ValueError("a metric_suite cannot list itself")
        return value


def _name(item: str | ComponentSection) -> str:
    return item if isinstance(item, str) else item.name


class MetricSuite(Metric):
    """Runs a list of model-scope metrics on one shared evaluation context.

    Every listed metric (``metrics``: names, or ``{name, <parameters>}`` mappings as in a
    run's ``metrics:`` list) computes from the same
    :class:`~erasus.evaluation.EvalContext`, whose per-split forward passes are cached:
    a split that several metrics read is run through the model once, so N metrics over
    the forget, retain and test splits cost one pass over each split, not N. The values
    are the listed metrics' values (an output name two metrics share is an error); the
    details hold each metric's details and ``forward_passes``, the batches the model was
    run on while the suite computed (what the suite cost beyond passes already cached),
    and ``forward_passes_total``, the context's count.

    Names are checked against the registry when the suite is built (an unknown name gets
    a did-you-mean suggestion); run-scope metrics (``avg_gap``, ``time``...) read other
    models' results and belong in the run's own ``metrics:`` list. A listed metric must
    support the evaluated model's modality.
    """

    name = "metric_suite"
    modalities = ("any",)
    needs = frozenset()
    Params = MetricSuiteParams
    paper = None
    #: The outputs with the default list (``loss``, ``mia``); an instance's ``outputs``
    #: are those of the metrics it lists.
    outputs = ("forget_loss", "retain_loss", "test_loss", "mia_auc")
    scope = "model"

    def __init__(self, params: Any = None, *, registry: Registry | None = None,
                 **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: MetricSuiteParams = self.params  # type: ignore[assignment]
        if registry is None:
            from erasus.losses import _default_registry

            registry = _default_registry()
        self.members: list[Metric] = []
        outputs: list[str] = []
        for item in p.metrics:
            name = _name(item)
            info = registry.get("metric", name)  # did-you-mean on a typo
            if getattr(info.cls, "scope", "model") != "model":
                raise IncompatibleComponentError(
                    f"metric_suite computes model-scope metrics; '{name}' is a run metric "
                    "(it compares models or reads run facts): list it in the run's metrics")
            params = {} if isinstance(item, str) else item.params
            member = info.cls(info.params_model(**params))
            clash = [o for o in getattr(member, "outputs", ()) if o in outputs]
            if clash:
                raise IncompatibleComponentError(
                    f"metric_suite: '{name}' reports {', '.join(clash)}, which an earlier "
                    "metric in the list reports too")
            outputs += list(getattr(member, "outputs", ()))
            self.members.append(member)
        self.outputs = tuple(outputs)  # type: ignore[misc]

    def compute(self, ctx: Any) -> Measurement:
        from erasus.components import ANY_MODALITY

        adapter = getattr(ctx, "adapter", None)
        model_modalities = set(getattr(adapter, "modalities", ()) or ())
        before = getattr(ctx, "forward_passes", 0)
        values: dict[str, float] = {}
        details: dict[str, Any] = {}
        for member in self.members:
            supported = set(member.modalities)
            if model_modalities and ANY_MODALITY not in supported \
                    and not supported & model_modalities:
                raise IncompatibleComponentError(
                    f"metric_suite: metric '{member.name}' supports {', '.join(sorted(supported))}"
                    f", but the model is {', '.join(sorted(model_modalities))}")
            result = member.compute(ctx)
            m = result if isinstance(result, Measurement) else Measurement(values=dict(result))
            values.update(m.values)
            if m.details:
                details[member.name] = m.details
        after = getattr(ctx, "forward_passes", 0)
        details["forward_passes"] = int(after - before)
        details["forward_passes_total"] = int(after)
        return Measurement(values=values, details=details)
