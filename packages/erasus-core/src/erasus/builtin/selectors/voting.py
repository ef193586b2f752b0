"""Voting: an ensemble of registered selectors, combined by rank aggregation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from erasus.errors import IncompatibleComponentError
from erasus.selection import Selection, Selector, SelectorParams, resolve_budget

if TYPE_CHECKING:
    import numpy as np

    from erasus.adapters import ModelAdapter
    from erasus.registry import Registry
    from erasus.selection import SelectionContext

__all__ = ["VotingMember", "VotingParams", "VotingSelector", "borda_points",
           "minmax_scores"]


class VotingMember(BaseModel):
    """One voter: a registered selector and its parameters (without a budget)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Registry name of the selector.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Its parameters; no 'budget': every member "
        "ranks the whole forget set.")
    weight: float = Field(1.0, gt=0, description="Weight of its vote.")

    @field_validator("params")
    @classmethod
    def _no_budget(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "budget" in value:
            raise ValueError("a voting member takes no 'budget': each member ranks the whole "
                             "forget set and the voting selector's own budget picks the "
                             "coreset; remove it")
        return value


class VotingParams(SelectorParams):
    """Parameters of the voting selector."""

    selectors: list[VotingMember] = Field(
        default_factory=lambda: [{"name": "herding"}, {"name": "upcore"}],
        validate_default=True, min_length=1, description="The members: a list of "
        "{name, params, weight}; each is a registered selector (checked when the voting "
        "selector is built). The default votes for representative points: herding "
        "(tracks the mean) and upcore (prunes outliers).")
    aggregation: Literal["borda", "score_mean"] = Field(
        "borda", description="Borda count over each member's ranking of the whole forget "
        "set, or the weighted mean of each member's scores after min-max normalisation.")


def borda_points(scores: np.ndarray) -> np.ndarray:
    """Borda points of one member: ``rank - 1`` from the bottom, ties sharing the mean.

    With ``n`` examples the best gets ``n - 1`` points and the worst 0; tied examples
    each get the average of the points their places would give.
    """
    import numpy as np
    from scipy.stats import rankdata

    return rankdata(np.asarray(scores, dtype=np.float64), method="average") - 1.0


def minmax_scores(scores: np.ndarray) -> np.ndarray:
    """Scores mapped onto ``[0, 1]`` (all 0.5 when they are all equal)."""
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64)
    lo, hi = scores.min(), scores.max()
    if hi - lo <= 0:
        return np.full(len(scores), 0.5)
    return (scores - lo) / (hi - lo)


class VotingSelector(Selector):
    """Combine several registered selectors by rank aggregation (an ensemble vote).

    Every member (``selectors``: ``{name, params, weight}``) selects with budget 1.0,
    ranking the whole forget set by its scores (higher first; positions it leaves out
    would rank last). ``aggregation: borda`` (default) gives each example ``n - 1`` points
    for a member's first place down to 0 for its last (ties share the mean: a member
    that scores everything alike gives no preference) and sums the weighted points;
    ``score_mean`` averages each member's scores after min-max normalisation to
    ``[0, 1]``. The coreset is the ``budget`` examples with the highest total (ties
    broken by a shuffle seeded by the seed), scored by it. ``info["members"]`` records
    each member's name, parameters and its own choice at this budget (its top positions).

    Members are looked up in the plugin registry when the voting selector is built: an
    unknown name is an error listing the installed selectors with a did-you-mean. A
    member must support the model's modality; members get the same seed and context.
    The voting selector's :meth:`runtime_needs` is the union of its members' needs, so
    ``erasus run`` records the training history a member needs (``forgetting_events``).
    """

    name = "voting"
    modalities = ("any",)
    needs = frozenset()
    Params = VotingParams
    paper = None

    def __init__(self, params: Any = None, *, registry: Registry | None = None,
                 **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._registry = registry
        self.members = self._build_members()

    def runtime_needs(self) -> frozenset[str]:
        """The union of the members' needs (and the voting selector's own)."""
        needs = set(type(self).needs)
        for _, selector in self.members:
            needs |= selector.runtime_needs()
        return frozenset(needs)

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            from erasus.plugins import active_registry

            self._registry = active_registry()
        return self._registry

    def _build_members(self) -> list[tuple[VotingMember, Selector]]:
        import pydantic

        from erasus.errors import ConfigError, ConfigProblem

        p: VotingParams = self.params  # type: ignore[assignment]
        out = []
        for i, member in enumerate(p.selectors):
            info = self.registry.get("selector", member.name)  # did-you-mean on a typo
            try:
                params = info.params_model(**{**member.params, "budget": 1.0})
            except pydantic.ValidationError as exc:
                raise ConfigError([ConfigProblem(
                    f"selectors[{i}].params.{'.'.join(str(x) for x in err['loc'])}",
                    err["msg"]) for err in exc.errors()], source=f"voting member "
                    f"'{member.name}'") from None
            out.append((member, info.cls(params)))
        return out

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None, context: SelectionContext | None = None
               ) -> Selection:
        import inspect

        import numpy as np

        from erasus.builtin.selectors._valuation import ranked
        from erasus.components import ANY_MODALITY
        from erasus.data import unwrap

        p: VotingParams = self.params  # type: ignore[assignment]
        dataset, _, _ = unwrap(forget)
        n = len(dataset)
        k = resolve_budget(p.budget, n)
        model_mods = set(getattr(adapter, "modalities", ()) or ())
        total = np.zeros(n)
        members_info = []
        for member, selector in self.members:
            mods = set(selector.modalities)
            if ANY_MODALITY not in mods and model_mods and not mods & model_mods:
                raise IncompatibleComponentError(
                    f"voting member '{member.name}' supports modalities {sorted(mods)}, but "
                    f"model '{adapter.name}' is {sorted(model_mods)}; remove it from the "
                    "vote or choose members for this modality")
            kwargs: dict[str, Any] = {}
            if "context" in inspect.signature(selector.select).parameters:
                kwargs["context"] = context
            got = selector.select(adapter, dataset, seed=seed, collate_fn=collate_fn,
                                  **kwargs)
            scores = np.full(n, -np.inf)
            idx = np.asarray(got.indices, dtype=np.int64)
            scores[idx] = np.asarray(got.scores, dtype=np.float64)
            if len(idx) < n:  # ranked last, below every score it gave
                floor = scores[idx].min() if len(idx) else 0.0
                scores[np.isinf(scores)] = floor - 1.0
            if p.aggregation == "borda":
                total += member.weight * borda_points(scores)
            else:
                total += member.weight * minmax_scores(scores)
            own = ranked(scores, k, seed)
            members_info.append({"name": member.name, "params": dict(member.params),
                                 "weight": member.weight,
                                 "choice": [int(i) for i in own],
                                 "info": got.info or {}})
        if p.aggregation == "score_mean":
            total /= sum(m.weight for m, _ in self.members)
        chosen = ranked(total, k, seed)
        return Selection(indices=chosen, scores=total[chosen],
                         info={"selector": self.name, "n_forget": n, "k": k,
                               "aggregation": p.aggregation, "members": members_info})
