"""The Python API: unlearn a model you hold, through the same code path as ``erasus run``.

    from erasus import Unlearner
    unlearner = Unlearner(model, strategy="gradient_difference", selector="random",
                          budget=0.5, epochs=3)
    model_u, history = unlearner.fit(forget, retain)
    unlearner.evaluate(forget, retain, test, metrics=["accuracy", "mia"])

Data may be torch Datasets or DataLoaders (their dataset and collate function are used;
selected indices always refer to positions in the dataset, however the loader shuffles),
with tuple or dict (Hugging Face style) batches. The model passed in is never modified:
``fit`` unlearns a copy and returns it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import ValidationError

from erasus.errors import ConfigError, ConfigProblem, did_you_mean
from erasus.plugins import using_registry

if TYPE_CHECKING:
    import torch

    from erasus.adapters import ModelAdapter
    from erasus.plugins import ErasusPluginManager
    from erasus.record import TrainingRecord
    from erasus.selection import Selection
    from erasus.strategy import History

__all__ = ["FitResult", "Unlearner"]


class FitResult(NamedTuple):
    """What :meth:`Unlearner.fit` returns: the unlearned model and the training history."""

    model: Any
    history: History


class Unlearner:
    """Unlearn part of a model's training data with a registered strategy and selector.

    Args:
        model: a ``torch.nn.Module`` (or what the named ``adapter``'s ``wrap`` accepts,
            e.g. a pipeline) or a :class:`~erasus.adapters.ModelAdapter`.
        strategy: registered strategy name.
        selector: registered selector name (``"full"``: the whole forget set).
        adapter: registered model adapter name for a plain module.
        seed: seed of every random choice.
        device: torch device to run on (default: where the model is).
        plugin_manager: a plugin manager (default: a fresh one with installed plugins).
        selector_params: parameters of the selector (``budget`` may also be given directly).
        **params: parameters of the strategy (and of the selector, when only it has them).
    """

    def __init__(self, model: torch.nn.Module | ModelAdapter, strategy: str = "gradient_difference",
                 selector: str = "full", *, adapter: str = "classifier", seed: int = 0,
                 device: str | None = None, plugin_manager: ErasusPluginManager | None = None,
                 selector_params: dict[str, Any] | None = None, **params: Any) -> None:
        from erasus.adapters import ModelAdapter
        from erasus.plugins import get_plugin_manager

        self.plugin_manager = pm = plugin_manager or get_plugin_manager()
        registry = pm.registry
        problems: list[ConfigProblem] = []
        s_info = _lookup(registry, "strategy", strategy, problems)
        sel_info = _lookup(registry, "selector", selector, problems)
        if isinstance(model, ModelAdapter):
            self.adapter = model
        else:
            a_info = _lookup(registry, "model", adapter, problems)
            if a_info is not None:
                self.adapter = a_info.cls.wrap(model, a_info.params_model())
        if problems:
            raise ConfigError(problems)
        strategy_params, sel_params = _split_params(s_info, sel_info, params,
                                                    dict(selector_params or {}))
        with using_registry(registry):
            self.strategy = _instantiate(s_info, strategy_params, "strategy")
            self.selector = _instantiate(sel_info, sel_params, "selector")
        if device is not None:
            self.adapter.to(device)
        self.seed = seed
        self.original: ModelAdapter | None = None
        self.unlearned: ModelAdapter | None = None
        self.history: History | None = None
        self.selection_: Selection | None = None
        self.facts: dict[str, float] = {}

    def fit(self, forget: Any, retain: Any = None, *, test: Any = None,
            training_record: TrainingRecord | str | None = None,
            forget_train_indices: list[int] | None = None,
            splits: dict[str, Any] | None = None) -> FitResult:
        """Select the coreset of ``forget`` and unlearn it; return (model, history).

        Strategies that need retain data (``erasus describe NAME`` lists the needs) raise
        an error when ``retain`` is missing. Components that need more get it here:
        ``test`` and further named ``splits`` (a selector's target set), the original's
        ``training_record`` (a :class:`erasus.record.TrainingRecord` or its directory) and
        ``forget_train_indices`` (each forget example's index in the training set the
        record was made on).
        """
        from erasus.data import unwrap
        from erasus.pipeline import seed_everything, unlearn
        from erasus.record import TrainingRecord
        from erasus.selection import SelectionContext
        from erasus.strategy import RunContext

        forget_ds, collate_fn, loader_bs = unwrap(forget)
        retain_ds, retain_collate, _ = unwrap(retain) if retain is not None else (None, None,
                                                                                  None)
        collate_fn = collate_fn or retain_collate
        if loader_bs and "batch_size" not in self.strategy.params.model_fields_set and \
                "batch_size" in type(self.strategy.params).model_fields:
            self.strategy.params = self.strategy.params.model_copy(
                update={"batch_size": loader_bs})
        seed_everything(self.seed)
        self.original = self.adapter
        work = self.adapter.clone()
        record = (TrainingRecord(training_record) if isinstance(training_record, (str, Path))
                  else training_record)
        context = SelectionContext(
            retain=retain_ds, test=unwrap(test)[0] if test is not None else None,
            extra={k: unwrap(v)[0] for k, v in (splits or {}).items()}, record=record,
            forget_train_indices=list(forget_train_indices) if forget_train_indices
            is not None else None, collate_fn=collate_fn)
        with using_registry(self.plugin_manager.registry):
            history, selection, facts = unlearn(
                work, self.strategy, self.selector, forget_ds, retain_ds,
                RunContext(seed=self.seed, record=record), collate_fn=collate_fn,
                reference=self.original, context=context)
        self.unlearned, self.history, self.selection_, self.facts = (work, history,
                                                                     selection, facts)
        return FitResult(work.model, history)

    def evaluate(self, forget: Any, retain: Any, test: Any, *, metrics: list[str] | None = None,
                 oracle: torch.nn.Module | ModelAdapter | None = None) -> dict[str, Any]:
        """Metrics of the original and the unlearned model (and ``oracle``, when given).

        Run-level metrics (``avg_gap``, ``time``, ``memory``) use this unlearner's timing.
        """
        from erasus.adapters import ModelAdapter
        from erasus.config import ResolvedComponent
        from erasus.data import DataInfo, Splits, unwrap
        from erasus.errors import ErasusError
        from erasus.pipeline import evaluate_models

        if self.unlearned is None:
            raise ErasusError("call fit() before evaluate()")
        registry = self.plugin_manager.registry
        problems: list[ConfigProblem] = []
        chosen = []
        for name in metrics or ["accuracy"]:
            info = _lookup(registry, "metric", name, problems)
            if info is not None:
                chosen.append(ResolvedComponent(info=info, params=info.params_model(),
                                                path="metrics"))
        if problems:
            raise ConfigError(problems)
        datasets = [unwrap(d) for d in (forget, retain, test)]
        collate_fn = next((c for _, c, _ in datasets if c is not None), None)
        splits = Splits(train=datasets[1][0], forget=datasets[0][0], retain=datasets[1][0],
                        test=datasets[2][0], info=DataInfo(modality=self.adapter.modalities[0]),
                        collate_fn=collate_fn)
        oracle_adapter = None
        if oracle is not None:
            oracle_adapter = oracle if isinstance(oracle, ModelAdapter) else \
                type(self.adapter)(oracle, self.adapter.params)
        run_info = {**self.facts, "oracle_seconds": None}
        with using_registry(registry):
            return evaluate_models(chosen, splits, {"original": self.original,
                                                    "unlearned": self.unlearned,
                                                    "oracle": oracle_adapter}, run_info)


def _lookup(registry: Any, kind: str, name: str, problems: list[ConfigProblem]) -> Any:
    from erasus.errors import ComponentNotFoundError

    try:
        return registry.get(kind, name)
    except ComponentNotFoundError as exc:
        problems.append(ConfigProblem(kind, str(exc)))
        return None


def _split_params(s_info: Any, sel_info: Any, params: dict[str, Any],
                  sel_params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route keyword parameters to the strategy, or to the selector when only it has them."""
    s_fields = set(s_info.params_model.model_fields)
    sel_fields = set(sel_info.params_model.model_fields)
    strategy_params: dict[str, Any] = {}
    problems = []
    for key, value in params.items():
        if key in s_fields:
            strategy_params[key] = value
        elif key in sel_fields:
            sel_params[key] = value
        else:
            hint = did_you_mean(key, s_fields | sel_fields)
            problems.append(ConfigProblem(
                key, f"not a parameter of strategy '{s_info.name}' or selector "
                     f"'{sel_info.name}'{hint}"))
    if problems:
        raise ConfigError(problems)
    return strategy_params, sel_params


def _instantiate(info: Any, params: dict[str, Any], path: str) -> Any:
    from erasus.config import problems_from_validation

    try:
        return info.cls(info.params_model(**params))
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc, info.params_model, prefix=path)
                          ) from None
