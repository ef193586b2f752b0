"""Auto: choose a selector from the forget set's size, the modality and the budget."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from erasus.errors import IncompatibleComponentError
from erasus.selection import Selection, Selector, SelectorParams, resolve_budget

if TYPE_CHECKING:
    from erasus.adapters import ModelAdapter
    from erasus.registry import Registry
    from erasus.selection import SelectionContext

__all__ = ["AutoParams", "AutoSelector", "choose_selector"]


class AutoParams(SelectorParams):
    """Parameters of the auto selector (thresholds of its rule table)."""

    small: int = Field(
        64, ge=1, description="Forget sets of at most this many examples are 'very small': "
        "a random subset then represents them as well as a structured one.")
    large: int = Field(
        50_000, ge=1, description="Forget sets of more than this many examples are 'large': "
        "k-means summarises them instead of greedy k-center.")
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Parameters for the chosen selector, by name "
        "(e.g. {kcenter: {batch_size: 32}}); the budget is always auto's own.")

    @field_validator("overrides")
    @classmethod
    def _no_budget(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, params in value.items():
            if "budget" in params:
                raise ValueError(f"overrides.{name} sets a budget; auto passes its own budget "
                                 "to the selector it chooses, so remove it")
        return value


def choose_selector(n: int, modalities: tuple[str, ...] | list[str] | str, k: int,
                    has_features: bool, *, small: int = 64, large: int = 50_000
                    ) -> tuple[str, str]:
    """``(selector name, reason)`` for a forget set of ``n`` examples and a budget of ``k``.

    The rules, first match wins (see :class:`AutoSelector`):

    1. ``k >= n`` -> ``full``;
    2. a ``text`` model -> ``random``;
    3. no per-example features -> ``gradient_norm``;
    4. ``n <= small`` -> ``random``;
    5. ``n > large`` -> ``kmeans_coreset``;
    6. otherwise -> ``kcenter``.
    """
    mods = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    if k >= n:
        return "full", (f"the budget covers the whole forget set ({k} >= {n} examples): "
                        "nothing to choose")
    if "text" in mods:
        return "random", ("a language model: on LLM forget sets a small random coreset "
                          "keeps full-set unlearning efficacy (Pal et al. 2025, the coreset "
                          "effect), so structure-aware selection is not worth its cost")
    if not has_features:
        return "gradient_norm", ("the model gives no per-example features, so geometric "
                                 "selectors cannot run; per-example gradient norms work "
                                 "through any loss")
    if n <= small:
        return "random", (f"a very small forget set ({n} <= {small} examples): a random "
                          "subset represents it as well as a structured one, at no cost")
    if n > large:
        return "kmeans_coreset", (f"a large forget set ({n} > {large} examples): k-means "
                                  "medoids summarise it in time linear in n, where greedy "
                                  f"k-center's {k} passes over all examples cost more")
    return "kcenter", (f"a mid-sized forget set ({small} < {n} <= {large} examples) with "
                       f"features and a partial budget ({k} of {n}): greedy k-center covers "
                       "the feature space with the smallest radius")


class AutoSelector(Selector):
    """Choose a selector by forget-set size, modality and budget, and delegate to it.

    The rule table (first match wins; ``n`` forget examples, budget ``k`` of them):

    ============================  ==================  ====================================
    condition                     selector            why
    ============================  ==================  ====================================
    ``k >= n``                    ``full``            nothing to choose
    model modality ``text``       ``random``          random coresets already keep LLM
                                                      unlearning efficacy (Pal et al. 2025)
    no per-example features       ``gradient_norm``   geometric selectors need features;
                                                      gradients exist for any loss
    ``n <= small`` (64)           ``random``          too few examples for structure to
                                                      pay off
    ``n > large`` (50,000)        ``kmeans_coreset``  linear-time summary of a large set
    otherwise                     ``kcenter``         greedy coverage of feature space
    ============================  ==================  ====================================

    Whether the model has features is tried on the first forget example
    (``adapter.features``; ``info["has_features"]`` is ``None`` where no rule needed it).
    The chosen selector is looked up in the plugin registry by name and run with this
    budget, its parameters from ``overrides`` (defaults otherwise), the same seed and
    context; ``info`` records ``chosen``, ``reason`` (the rule that fired) and the
    delegate's own ``info``. A chosen selector that is not installed is an error naming it, never a
    silent substitute.
    """

    name = "auto"
    modalities = ("any",)
    needs = frozenset()
    Params = AutoParams
    paper = None

    def __init__(self, params: Any = None, *, registry: Registry | None = None,
                 **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._registry = registry

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            from erasus.plugins import active_registry

            self._registry = active_registry()
        return self._registry

    def select(self, adapter: ModelAdapter, forget: Any, *, seed: int = 0,
               collate_fn: Any = None, context: SelectionContext | None = None
               ) -> Selection:
        import inspect

        from erasus.data import unwrap

        p: AutoParams = self.params  # type: ignore[assignment]
        dataset, _, _ = unwrap(forget)
        n = len(dataset)
        k = resolve_budget(p.budget, n)
        modalities = tuple(getattr(adapter, "modalities", ()) or ())
        # only tried where a rule reads it (one forward pass on one example)
        features = (_has_features(adapter, dataset, collate_fn)
                    if k < n and "text" not in modalities else None)
        chosen, reason = choose_selector(n, modalities, k, features is not False,
                                         small=p.small, large=p.large)
        if chosen not in self.registry.names("selector"):
            raise IncompatibleComponentError(
                f"selector 'auto' chose '{chosen}' ({reason}), but no installed plugin "
                f"provides it; installed selectors: "
                f"{', '.join(self.registry.names('selector'))}. Name a selector explicitly")
        info = self.registry.get("selector", chosen)
        budget = p.budget if chosen != "full" else 1.0
        delegate = info.cls(info.params_model(**{**p.overrides.get(chosen, {}),
                                                 "budget": budget}))
        kwargs: dict[str, Any] = {}
        if "context" in inspect.signature(delegate.select).parameters:
            kwargs["context"] = context
        got = delegate.select(adapter, dataset, seed=seed, collate_fn=collate_fn, **kwargs)
        return Selection(indices=got.indices, scores=got.scores,
                         info={"selector": self.name, "chosen": chosen, "reason": reason,
                               "n_forget": n, "k": k, "modalities": list(modalities),
                               "has_features": features, "delegate": got.info or {}})


def _has_features(adapter: ModelAdapter, dataset: Any, collate_fn: Any) -> bool:
    """Whether ``adapter.features`` works on the first example (no weights change)."""
    import torch
    from torch.utils.data.dataloader import default_collate

    if adapter is None or len(dataset) == 0:
        return False
    model = adapter.model
    was_training = model.training
    model.eval()
    try:
        batch = adapter.prepare_batch((collate_fn or default_collate)(
            [dataset[i] for i in range(min(len(dataset), max(1, adapter.min_batch_size)))]))
        batch["index"] = torch.arange(adapter.batch_size(batch), device=adapter.device)
        with torch.no_grad():
            adapter.features(batch)
    except IncompatibleComponentError:
        return False
    finally:
        model.train(was_training)
    return True
