"""Conformance suites: every registered component, run on a tiny model of its modality.

Two halves, in the style of hydra's plugin test suites and peft's test tables:

- ``*_cases(registry, plugin=None)`` turn a registry into ``pytest.param`` lists, one per
  component (or per component x model adapter whose modalities it supports);
- ``check_*`` functions run one case and raise :class:`ConformanceError` (an
  ``AssertionError``) with a message that says what is wrong and how to fix it.

A plugin's own tests reuse them, so its components are tested the moment they are
registered::

    import pytest
    from erasus.plugins import get_plugin_manager
    from erasus.testing import conformance as c

    REGISTRY = get_plugin_manager().registry

    @pytest.mark.parametrize(("strategy", "adapter"), c.strategy_cases(REGISTRY, plugin="llm"))
    def test_strategy(strategy, adapter):
        c.check_strategy(strategy, adapter)

With ``plugin=...`` a case is kept when either of its components comes from that plugin,
so a plugin that adds a model adapter also runs every generic strategy, selector and
metric on it.

What components declare for the suites (read with ``getattr`` and a default):

- ``Strategy.effect``: what unlearning must do to the tiny model, one of
  :data:`EFFECTS` (or a tuple of them). Undeclared is a failure: the intended direction
  is the component's to state, never the suite's to guess.
- ``Selector.supports_partial_budget`` (default ``True``): ``False`` for selectors that
  only ever return the whole forget set (``full``); the suite then checks that a partial
  budget is refused with an error instead of silently ignored.
- ``Metric.outputs``, ``scope`` and ``requires`` (already part of the Metric contract).
- ``adapters`` (default: none): registry names of the only model adapters the component
  runs on, for components that need one family's model structure (SISA's ensemble, the
  certified linear classifier); its cases pair it with those adapters alone.
- ``conformance_problem(adapter_cls, seed)`` (a classmethod, optional): the tiny problem
  to check the component on instead of the adapter's own, for components that need a
  model trained their own way (see :func:`component_problem`).

Every model adapter must implement ``tiny_problem(seed)``: a tiny trained model and its
forget/retain/test data, small enough that each check here runs in well under 2 seconds.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from erasus.adapters import ModelAdapter, TinyProblem
    from erasus.components import ComponentInfo
    from erasus.data import Splits
    from erasus.registry import Registry

__all__ = [
    "DEFAULT_STEPS",
    "EFFECTS",
    "RUN_INFO",
    "ConformanceError",
    "PluginSuite",
    "builtin_components",
    "check_dataset",
    "check_metric",
    "check_model_adapter",
    "check_reporter",
    "check_selector",
    "check_strategy",
    "check_strategy_resume",
    "component_problem",
    "dataset_cases",
    "declared_effects",
    "has_tiny_problem",
    "mean_loss",
    "metric_cases",
    "model_cases",
    "reporter_cases",
    "selector_cases",
    "strategy_cases",
    "tiny_problem",
    "tiny_splits",
]

#: The effects a strategy may declare (``effect = "..."``), and what the suite checks.
#: Losses are mean per-example losses on the tiny problem, compared with the original.
EFFECTS: dict[str, str] = {
    "raise_forget_loss": "the forget-set loss rises above the original model's",
    "fit_retain": "the weights change and the retain-set loss does not rise above the "
    "original model's (5% tolerance): training continues on the retain set",
    "retrain_from_scratch": "the weights are re-initialised and fitted to the retain set: "
    "the forget-set loss ends above the original model's and at least half the test-set "
    "loss (forget examples look unseen), and the retain-set loss below that of a freshly "
    "re-initialised model",
    "change_weights": "the weights change (no direction is checked; declare this only "
    "when no loss direction describes the method)",
}

#: Optimizer steps the strategy suite runs (through ``max_steps`` when the Params have it).
DEFAULT_STEPS = 5

#: Plausible run facts for run-scope metrics (what the pipeline records in ``run_info``).
RUN_INFO: dict[str, Any] = {
    "selection_seconds": 0.01,
    "unlearn_seconds": 0.5,
    "oracle_seconds": 2.0,
    "original_seconds": 2.5,
    "peak_host_mb": 512.0,
    "peak_device_mb": 0.0,
    "steps": 5.0,
    "device": "cpu",
}

_RTOL = 1e-3  # relative margin for "the loss rises"
_RETAIN_TOL = 0.05  # relative tolerance for "the retain loss does not rise"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".npy", ".joblib")


class ConformanceError(AssertionError):
    """A component does not meet the contract its kind and its declarations promise."""


def _expect(condition: Any, message: str) -> None:
    # Not ``assert``: the suites must also check under ``python -O``.
    if not condition:
        raise ConformanceError(message)


def _label(info: ComponentInfo) -> str:
    return f"{info.kind} '{info.name}' (plugin '{info.plugin}')"


# -- tiny problems ----------------------------------------------------------------------
_TINY_CACHE: dict[tuple[type, int], TinyProblem] = {}
_RECORDED_CACHE: dict[tuple[Any, ...], TinyProblem] = {}


def has_tiny_problem(adapter_cls: type) -> bool:
    """Whether a model adapter class overrides :meth:`ModelAdapter.tiny_problem`."""
    from erasus.adapters import ModelAdapter

    own = getattr(adapter_cls, "tiny_problem", None)
    return own is not None and getattr(own, "__func__", None) is not getattr(
        ModelAdapter.tiny_problem, "__func__", None)


def tiny_problem(adapter_cls: type, seed: int = 0, needs: Any = ()) -> TinyProblem:
    """``adapter_cls.tiny_problem(seed)``, built once per session; each call gets its own
    copy of the model (the data sets are shared and must not be modified).

    When ``needs`` names training-record kinds (``"training_checkpoints"``...), the model
    is the tiny problem's model retrained from scratch with those recorded
    (:func:`erasus.testing.tiny.record_training`), and ``record`` is set.
    """
    from erasus.adapters import TinyProblem
    from erasus.record import record_kinds

    kinds = record_kinds(needs)
    if kinds:
        rkey = (adapter_cls, int(seed), tuple(sorted(kinds)))
        if rkey not in _RECORDED_CACHE:
            from erasus.testing.tiny import record_training

            _RECORDED_CACHE[rkey] = record_training(tiny_problem(adapter_cls, seed), kinds,
                                                    seed=seed)
        rec = _RECORDED_CACHE[rkey]
        out = tiny_problem(adapter_cls, seed)
        out.adapter = rec.adapter.clone()
        out.record = rec.record
        out.forget_train_indices = rec.forget_train_indices
        return out

    key = (adapter_cls, int(seed))
    if key not in _TINY_CACHE:
        problem = adapter_cls.tiny_problem(seed)
        _expect(isinstance(problem, TinyProblem),
                f"{adapter_cls.__qualname__}.tiny_problem() returned "
                f"{type(problem).__name__}, not an erasus.adapters.TinyProblem")
        _TINY_CACHE[key] = problem
    cached = _TINY_CACHE[key]
    problem = TinyProblem(cached.adapter.clone(), cached.forget, cached.retain, cached.test,
                          cached.collate_fn)
    for attr in ("info", "extra", "strategy_params"):  # forward-compatible optional fields
        if hasattr(cached, attr):
            setattr(problem, attr, getattr(cached, attr))
    return problem


def component_problem(info: ComponentInfo, adapter_cls: type, seed: int = 0) -> TinyProblem:
    """The tiny problem a component is checked on with ``adapter_cls``.

    A component whose methods need a model trained in its own way (certified removal's
    objective-perturbed linear model, SISA's sharded ensemble and its slice checkpoints)
    declares a classmethod ``conformance_problem(adapter_cls, seed)`` returning that
    problem (a fresh copy per call), or ``None`` for adapters it has none for; every other
    component gets the adapter's :func:`tiny_problem`, with the training record its
    ``needs`` name.
    """
    from erasus.adapters import TinyProblem

    make = getattr(info.cls, "conformance_problem", None)
    if callable(make):
        problem = make(adapter_cls, seed)
        if problem is not None:
            _expect(isinstance(problem, TinyProblem),
                    f"{_label(info)}: conformance_problem() returned "
                    f"{type(problem).__name__}, not an erasus.adapters.TinyProblem")
            return problem
    return tiny_problem(adapter_cls, seed, info.needs)


def _family_params(problem: TinyProblem, strategy_cls: type,
                   params: dict[str, Any] | None) -> dict[str, Any]:
    """The tiny problem's settings for this strategy (its family's), under ``params``."""
    family = dict(getattr(problem, "strategy_params", {}).get(strategy_cls.name, {}))
    known = strategy_cls.Params.model_fields
    return {**{k: v for k, v in family.items() if k in known}, **(params or {})}


def _forget_cached(adapter_cls: type, seed: int) -> None:
    _TINY_CACHE.pop((adapter_cls, int(seed)), None)


def tiny_splits(problem: TinyProblem, adapter_info: ComponentInfo | None = None) -> Splits:
    """The :class:`~erasus.data.Splits` of a tiny problem: ``train`` is forget + retain."""
    from torch.utils.data import ConcatDataset

    from erasus.data import DataInfo, Splits

    info = getattr(problem, "info", None)
    if info is None:
        modalities = adapter_info.modalities if adapter_info is not None else \
            tuple(problem.adapter.modalities)
        num_classes = None
        try:
            num_classes = int(problem.adapter.num_classes)  # type: ignore[attr-defined]
        except Exception:  # not a classifier: no class count to report
            num_classes = None
        info = DataInfo(modality=modalities[0], num_classes=num_classes)
    return Splits(
        train=ConcatDataset([problem.forget, problem.retain]),
        forget=problem.forget,
        retain=problem.retain,
        test=problem.test,
        info=info,
        forget_indices=list(range(len(problem.forget))),
        extra=dict(getattr(problem, "extra", None) or {}),
        collate_fn=problem.collate_fn,
    )


def mean_loss(adapter: ModelAdapter, dataset: Any, collate_fn: Any = None, *,
              batch_size: int = 256) -> float:
    """The mean per-example loss of ``adapter`` on ``dataset`` (eval mode, no gradients)."""
    import torch

    from erasus.data import index_loader

    model = adapter.model
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for indices, raw in index_loader(dataset, batch_size=batch_size,
                                         collate_fn=collate_fn,
                                         min_batch_size=adapter.min_batch_size):
            batch = adapter.prepare_batch(raw)
            batch["index"] = indices.to(adapter.device)  # as EvalContext does
            loss = adapter.per_example_loss(batch)
            total += float(loss.double().sum())
            count += int(loss.shape[0])
    model.train(was_training)
    return total / max(count, 1)


def _first_batch(problem: TinyProblem, n: int = 4) -> Any:
    from torch.utils.data.dataloader import default_collate

    collate = problem.collate_fn or default_collate
    items = [problem.forget[i] for i in range(min(n, len(problem.forget)))]
    return collate(items)


def _snapshot(adapter: ModelAdapter) -> dict[str, Any]:
    return {k: v.detach().cpu().clone() for k, v in adapter.model.state_dict().items()}


def _changed(adapter: ModelAdapter, before: dict[str, Any]) -> list[str]:
    import torch

    after = adapter.model.state_dict()
    return [k for k, v in before.items()
            if k not in after or after[k].shape != v.shape
            or not torch.equal(after[k].detach().cpu(), v)] + \
        [k for k in after if k not in before]


def _non_finite(adapter: ModelAdapter) -> list[str]:
    import torch

    return [k for k, v in adapter.model.state_dict().items()
            if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _fingerprint(dataset: Any) -> list[Any]:
    """Every item of a (tiny) dataset, copied, to detect in-place modification."""
    import copy

    return [copy.deepcopy(dataset[i]) for i in range(len(dataset))]


def _same(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.shape == b.shape and torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    try:
        return bool(a == b)
    except Exception:  # arrays and other types without a plain truth value
        import numpy as np

        return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def _seed_all(seed: int) -> None:
    """Seed every global RNG as the pipeline does before each phase."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- cases -----------------------------------------------------------------------------
def _tested_adapters(registry: Registry) -> list[ComponentInfo]:
    return [a for a in registry.entries("model") if has_tiny_problem(a.cls)]


def _supports(info: ComponentInfo, adapter: ComponentInfo) -> bool:
    from erasus.components import ANY_MODALITY

    # a component may name the adapters it runs on (``adapters = ("classifier",)``)
    only = tuple(getattr(info.cls, "adapters", ()) or ())
    if only and adapter.name not in only:
        return False
    mods = set(info.modalities)
    return ANY_MODALITY in mods or bool(mods & set(adapter.modalities))


def _paired_cases(registry: Registry, kind: str, plugin: str | None) -> list[Any]:
    import pytest

    adapters = _tested_adapters(registry)
    cases = []
    for info in registry.entries(kind):
        matching = [a for a in adapters if _supports(info, a)]
        if not matching:
            # A component nothing can test is a failure, not a silent gap.
            if plugin is None or info.plugin == plugin:
                cases.append(pytest.param(info, None, id=f"{info.name}-no_adapter"))
            continue
        for adapter in matching:
            if plugin is None or plugin in (info.plugin, adapter.plugin):
                cases.append(pytest.param(info, adapter, id=f"{info.name}-{adapter.name}"))
    return cases


def _single_cases(registry: Registry, kind: str, plugin: str | None) -> list[Any]:
    import pytest

    return [pytest.param(info, id=info.name) for info in registry.entries(kind)
            if plugin is None or info.plugin == plugin]


def builtin_components(kind: str, adapter: str, modalities: tuple[str, ...]) -> set[str]:
    """Names of the core's built-in components of ``kind`` that run on an adapter named
    ``adapter`` with ``modalities``: those of modality ``"any"`` or a shared one, unless
    the component names the only adapters it runs on. A plugin's tests compare their
    cases with it, so no generic component silently stops being checked on their model."""
    from erasus.plugins import get_plugin_manager

    core = get_plugin_manager(entrypoints=False).registry
    names = set()
    for info in core.entries(kind):
        only = tuple(getattr(info.cls, "adapters", ()) or ())
        if only and adapter not in only:
            continue
        if "any" in info.modalities or set(info.modalities) & set(modalities):
            names.add(info.name)
    return names


def model_cases(registry: Registry, plugin: str | None = None) -> list[Any]:
    """One ``pytest.param(adapter_info)`` per registered model adapter."""
    return _single_cases(registry, "model", plugin)


def strategy_cases(registry: Registry, plugin: str | None = None) -> list[Any]:
    """``pytest.param(strategy_info, adapter_info)`` for every strategy x every adapter
    (with a ``tiny_problem``) whose modalities it supports; ``"any"`` pairs with all."""
    return _paired_cases(registry, "strategy", plugin)


def selector_cases(registry: Registry, plugin: str | None = None) -> list[Any]:
    """``pytest.param(selector_info, adapter_info)`` for every selector x supported adapter."""
    return _paired_cases(registry, "selector", plugin)


def metric_cases(registry: Registry, plugin: str | None = None) -> list[Any]:
    """``pytest.param(metric_info, adapter_info)`` for every metric x supported adapter."""
    return _paired_cases(registry, "metric", plugin)


def dataset_cases(registry: Registry, plugin: str | None = None) -> list[Any]:
    """One ``pytest.param(dataset_info)`` per registered dataset provider."""
    return _single_cases(registry, "dataset", plugin)


def reporter_cases(registry: Registry, plugin: str | None = None) -> list[Any]:
    """One ``pytest.param(reporter_info)`` per registered reporter."""
    return _single_cases(registry, "reporter", plugin)


def _need_adapter(info: ComponentInfo, adapter_info: ComponentInfo | None) -> None:
    _expect(adapter_info is not None,
            f"{_label(info)} supports modalities {list(info.modalities)}, but no registered "
            "model adapter with a tiny_problem() has any of them, so nothing can test it; "
            "register an adapter for that modality (with tiny_problem) or fix 'modalities'")


# -- model adapters --------------------------------------------------------------------
def check_model_adapter(adapter_info: ComponentInfo, seed: int = 0) -> None:
    """A model adapter: tiny problem, per-example loss, safetensors round trip, groups."""
    import tempfile
    from pathlib import Path

    import torch

    from erasus.adapters import WEIGHTS_FILE, ModelAdapter
    from erasus.components import ANY_MODALITY

    cls = adapter_info.cls
    label = _label(adapter_info)
    _expect(issubclass(cls, ModelAdapter), f"{label} is not a subclass of ModelAdapter")
    mods = tuple(adapter_info.modalities)
    _expect(mods and ANY_MODALITY not in mods,
            f"{label} must declare its concrete modalities (got {list(mods)}); only "
            "components that work on every adapter declare 'any'")
    _expect(has_tiny_problem(cls),
            f"{label} does not implement tiny_problem(seed); the conformance suites run "
            "every strategy, selector and metric on it, so add one (see "
            "erasus.testing.tiny for the classifier's)")
    problem = tiny_problem(cls, seed)
    adapter = problem.adapter
    _expect(isinstance(adapter, cls),
            f"{label}: tiny_problem().adapter is a {type(adapter).__name__}, not a "
            f"{cls.__name__}")
    for split in ("forget", "retain", "test"):
        data = getattr(problem, split)
        _expect(data is not None and len(data) > 0,
                f"{label}: tiny_problem().{split} is empty")

    adapter.model.eval()
    raw = _first_batch(problem)
    batch = adapter.prepare_batch(raw)
    _expect(isinstance(batch, dict), f"{label}: prepare_batch must return a dict, got "
            f"{type(batch).__name__}")
    size = min(4, len(problem.forget))
    with torch.no_grad():
        loss = adapter.per_example_loss(batch)
    _expect(isinstance(loss, torch.Tensor) and tuple(loss.shape) == (size,),
            f"{label}: per_example_loss must return a tensor of shape [{size}] for a batch "
            f"of {size}, got {getattr(loss, 'shape', type(loss).__name__)}")
    _expect(loss.is_floating_point() and bool(torch.isfinite(loss).all()),
            f"{label}: per_example_loss is not finite: {loss.tolist()}")
    _expect(ModelAdapter.batch_size(batch) == size,
            f"{label}: ModelAdapter.batch_size(prepare_batch(...)) is "
            f"{ModelAdapter.batch_size(batch)} for a batch of {size}")
    with torch.no_grad():
        outputs = adapter.outputs(batch)
    _expect("loss" in outputs and tuple(outputs["loss"].shape) == (size,),
            f"{label}: outputs(batch) must hold 'loss' of shape [{size}]; got keys "
            f"{sorted(outputs)}")
    _expect(torch.allclose(outputs["loss"].float(), loss.float(), rtol=1e-4, atol=1e-5),
            f"{label}: outputs(batch)['loss'] differs from per_example_loss(batch)")
    # NPO, SimNPO and WGA read target tokens: their masked mean must be the loss
    with torch.no_grad():
        token_loss, mask = adapter.token_losses(batch)
    _expect(token_loss.shape == mask.shape and token_loss.shape[0] == size
            and bool(mask.any(dim=1).all()),
            f"{label}: token_losses must return (losses, mask) of equal shape [{size}, T] "
            "with at least one target token per example")
    mean = (token_loss * mask).sum(1) / mask.sum(1)
    _expect(torch.allclose(mean.float(), loss.float(), rtol=1e-4, atol=1e-5),
            f"{label}: the masked mean of token_losses differs from per_example_loss; an "
            "adapter whose loss averages several target tokens must override token_losses")

    # Gradients must flow, or no loss-based strategy can run on this adapter.
    adapter.model.zero_grad(set_to_none=True)
    adapter.per_example_loss(adapter.prepare_batch(raw)).mean().backward()
    grads = [p.grad for p in adapter.model.parameters() if p.grad is not None]
    _expect(grads and any(bool(g.abs().sum() > 0) for g in grads)
            and all(bool(torch.isfinite(g).all()) for g in grads),
            f"{label}: per_example_loss(...).mean().backward() gives no finite, non-zero "
            "gradient")
    adapter.model.zero_grad(set_to_none=True)

    groups = adapter.parameter_groups()
    names = {n for n, _ in adapter.model.named_parameters()}
    _expect(isinstance(groups, dict) and groups.get("all"),
            f"{label}: parameter_groups() must contain a non-empty 'all' group")
    for group, members in groups.items():
        unknown = sorted(set(members) - names)
        _expect(not unknown, f"{label}: parameter group '{group}' names parameters the "
                f"model does not have: {unknown[:5]}")

    copy = adapter.clone()
    with torch.no_grad():
        next(iter(copy.model.parameters())).add_(1.0)
    _expect(not torch.equal(next(iter(copy.model.parameters())),
                            next(iter(adapter.model.parameters()))),
            f"{label}: clone() shares weights with the original; it must be a deep copy")

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "model"
        adapter.save(directory)
        # Weights may live in sub-folders (a diffusers pipeline layout), but somewhere.
        _expect(any(directory.rglob("*.safetensors")),
                f"{label}: save() wrote no .safetensors file (expected {WEIGHTS_FILE} or a "
                "Hugging Face layout with safetensors weights)")
        _check_no_pickle(label, directory)
        loaded = cls.load(directory)
        _expect(isinstance(loaded, cls), f"{label}: load() returned "
                f"{type(loaded).__name__}")
        loaded.model.eval()
        with torch.no_grad():
            again = loaded.per_example_loss(loaded.prepare_batch(raw))
            first = adapter.per_example_loss(adapter.prepare_batch(raw))
        _expect(torch.equal(again.cpu(), first.cpu()),
                f"{label}: the model loaded from save() gives other losses "
                f"({again.tolist()} vs {first.tolist()})")
        _expect(not _changed(loaded, _snapshot(adapter)),
                f"{label}: the weights loaded from save() differ from the saved ones")


def _check_no_pickle(label: str, directory: Any) -> None:
    import zipfile

    from safetensors import safe_open

    for path in directory.rglob("*"):
        if not path.is_file():
            continue
        _expect(path.suffix not in _PICKLE_SUFFIXES,
                f"{label}: save() wrote {path.name}; weights must be safetensors (no pickle)")
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                _expect(list(f.keys()), f"{label}: {path.name} holds no tensors")
            continue
        head = path.read_bytes()[:2]
        _expect(not head.startswith(b"\x80"),
                f"{label}: save() wrote {path.name}, which is a pickle")
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                pickled = [n for n in z.namelist() if n.endswith(".pkl")]
            _expect(not pickled, f"{label}: save() wrote {path.name}, a torch.save archive "
                    "(pickle); write safetensors instead")


# -- strategies ------------------------------------------------------------------------
def declared_effects(strategy_cls: type) -> tuple[str, ...]:
    """The effects a strategy class declares (``effect``), validated against EFFECTS."""
    effect = getattr(strategy_cls, "effect", None)
    name = getattr(strategy_cls, "name", strategy_cls.__qualname__)
    choices = ", ".join(f"'{e}'" for e in EFFECTS)
    _expect(effect is not None,
            f"strategy '{name}' declares no 'effect': add a class attribute effect = one of "
            f"{choices} (see erasus.testing.conformance.EFFECTS), so the conformance suite "
            "can check that it changes the model in the intended direction")
    effects = (effect,) if isinstance(effect, str) else tuple(effect)
    unknown = [e for e in effects if e not in EFFECTS]
    _expect(effects and not unknown,
            f"strategy '{name}' declares effect {effect!r}; each must be one of {choices}")
    return effects


def _small_params(params_model: type, steps: int, extra: dict[str, Any] | None) -> Any:
    fields = getattr(params_model, "model_fields", {})
    overrides: dict[str, Any] = {}
    if "max_steps" in fields:
        overrides["max_steps"] = steps
    overrides.update(extra or {})
    return params_model(**overrides)


def _frozen_reference(adapter: ModelAdapter) -> ModelAdapter:
    ref = adapter.clone()
    for p in ref.model.parameters():
        p.requires_grad_(False)
    ref.model.eval()
    return ref


def _unlearn_once(strategy_info: ComponentInfo, problem: TinyProblem, original: ModelAdapter,
                  splits: Splits, seed: int, params: Any, checkpoints: Any = None,
                  on_step: Any = None) -> tuple[ModelAdapter, Any, ModelAdapter | None]:
    from erasus.strategy import RunContext, UnlearnData

    adapter = original.clone()
    reference = _frozen_reference(original) if "reference_model" in strategy_info.needs \
        else None
    strategy = strategy_info.cls(params)
    _seed_all(seed)
    history = strategy.unlearn(
        adapter,
        UnlearnData(forget=problem.forget, retain=problem.retain, info=splits.info,
                    collate_fn=problem.collate_fn,
                    forget_train_indices=getattr(problem, "forget_train_indices", None)),
        RunContext(seed=seed, reference=reference, checkpoints=checkpoints, on_step=on_step,
                   record=getattr(problem, "record", None)))
    return adapter, history, reference


def check_strategy(strategy_info: ComponentInfo, adapter_info: ComponentInfo | None,
                   seed: int = 0, *, steps: int = DEFAULT_STEPS,
                   params: dict[str, Any] | None = None) -> None:
    """Run a strategy for a few steps on the adapter's tiny problem and check the result.

    Checks: the declared ``effect`` happens; the adapter passed in is the one modified
    (in place), the reference model and the data are not; no weight becomes NaN; a
    loss-based strategy records 1..``steps`` finite steps; the same seed gives the same
    weights.

    Args:
        steps: optimizer steps (set through ``max_steps`` when the Params have it).
        params: further parameter overrides (a plugin's tests may pass smaller settings).
    """
    import torch

    from erasus.strategy import History, LossStrategy, Strategy

    _need_adapter(strategy_info, adapter_info)
    assert adapter_info is not None
    cls = strategy_info.cls
    label = _label(strategy_info)
    where = f"{label} on model '{adapter_info.name}'"
    _expect(issubclass(cls, Strategy), f"{label} is not a subclass of Strategy")
    effects = declared_effects(cls)
    problem = component_problem(strategy_info, adapter_info.cls, seed)
    splits = tiny_splits(problem, adapter_info)
    original = problem.adapter
    before = _snapshot(original)
    data_before = (_fingerprint(problem.forget), _fingerprint(problem.retain))
    run_params = _small_params(cls.Params, steps, _family_params(problem, cls, params))
    forget0 = mean_loss(original, problem.forget, problem.collate_fn)
    retain0 = mean_loss(original, problem.retain, problem.collate_fn)

    adapter, history, reference = _unlearn_once(strategy_info, problem, original, splits,
                                                seed, run_params)

    data_after = (_fingerprint(problem.forget), _fingerprint(problem.retain))
    if not _same(data_before, data_after):
        _forget_cached(adapter_info.cls, seed)
        raise ConformanceError(f"{where} modified the forget or retain data set in place")
    _expect(not _changed(original, before),
            f"{where} modified a model other than the adapter it was given")
    if reference is not None:
        _expect(not _changed(reference, before),
                f"{where} modified the frozen reference model (RunContext.reference)")
    _expect(isinstance(history, History),
            f"{where}: unlearn() must return an erasus.strategy.History, got "
            f"{type(history).__name__}")
    bad = _non_finite(adapter)
    _expect(not bad, f"{where} left non-finite weights in {bad[:5]}")
    changed = _changed(adapter, before)
    _expect(changed, f"{where} did not change the weights of the adapter it was given; "
            "unlearn() must edit adapter.model in place")
    if issubclass(cls, LossStrategy):
        n = history.num_steps
        _expect(n >= 1, f"{where}: a loss-based strategy recorded no steps in its History")
        if "max_steps" in cls.Params.model_fields and params is None:
            _expect(n <= steps, f"{where} ran {n} steps with max_steps={steps}")
        for i, step in enumerate(history.steps):
            bad_values = {k: v for k, v in step.items()
                          if not isinstance(v, (int, float)) or not math.isfinite(v)}
            _expect(not bad_values, f"{where}: History step {i + 1} has non-finite or "
                    f"non-numeric values {bad_values}")
            _expect("loss" in step, f"{where}: History step {i + 1} has no 'loss'")

    forget1 = mean_loss(adapter, problem.forget, problem.collate_fn)
    retain1 = mean_loss(adapter, problem.retain, problem.collate_fn)
    losses = (f"forget loss {forget0:.4g} -> {forget1:.4g}, "
              f"retain loss {retain0:.4g} -> {retain1:.4g}")
    for effect in effects:
        if effect in ("raise_forget_loss", "retrain_from_scratch"):
            _expect(forget1 > forget0 * (1 + _RTOL) + 1e-7,
                    f"{where} declares effect '{effect}' but did not raise the forget-set "
                    f"loss after {steps} steps ({losses})")
        if effect == "fit_retain":
            _expect(retain1 <= retain0 * (1 + _RETAIN_TOL) + 1e-4,
                    f"{where} declares effect 'fit_retain' but the retain-set loss rose "
                    f"({losses})")
        if effect == "retrain_from_scratch":
            fresh = original.clone()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                fresh.reset_parameters()
            retain_init = mean_loss(fresh, problem.retain, problem.collate_fn)
            _expect(retain1 < retain_init,
                    f"{where} declares effect 'retrain_from_scratch' but its retain-set loss "
                    f"{retain1:.4g} is not below that of a re-initialised model "
                    f"({retain_init:.4g})")
            test1 = mean_loss(adapter, problem.test, problem.collate_fn)
            _expect(forget1 >= 0.5 * test1,
                    f"{where} declares effect 'retrain_from_scratch' but the forget set does "
                    f"not look like unseen data: its loss {forget1:.4g} is far below the test "
                    f"loss {test1:.4g}, so the weights were not re-initialised")

    again, _, _ = _unlearn_once(strategy_info, problem, original, splits, seed, run_params)
    differ = _changed(again, _snapshot(adapter))
    _expect(not differ, f"{where} is not reproducible: two runs with seed {seed} gave "
            f"different weights in {differ[:5]}; draw randomness from generators seeded by "
            "RunContext.seed")


def check_strategy_resume(strategy_info: ComponentInfo, adapter_info: ComponentInfo | None,
                          seed: int = 0, *, steps: int = DEFAULT_STEPS,
                          params: dict[str, Any] | None = None) -> None:
    """A loss-based strategy killed after a checkpoint and resumed ends with the same weights
    as an uninterrupted run (its ``prepare`` state must not depend on the run so far)."""
    import tempfile

    from erasus.checkpoint import CheckpointStore
    from erasus.strategy import LossStrategy

    _need_adapter(strategy_info, adapter_info)
    assert adapter_info is not None
    cls = strategy_info.cls
    where = f"{_label(strategy_info)} on model '{adapter_info.name}'"
    if not issubclass(cls, LossStrategy):
        return  # one-step strategies have nothing to resume
    fields = cls.Params.model_fields
    _expect("checkpoint_every" in fields and "max_steps" in fields,
            f"{where}: a LossStrategy's Params must extend erasus.strategy.LoopParams")
    problem = component_problem(strategy_info, adapter_info.cls, seed)
    splits = tiny_splits(problem, adapter_info)
    original = problem.adapter
    run_params = _small_params(cls.Params, steps, {"checkpoint_every": 1,
                                                   **_family_params(problem, cls, params)})

    full, history, _ = _unlearn_once(strategy_info, problem, original, splits, seed,
                                     run_params)
    total = history.num_steps
    if total < 2:
        return  # nothing to interrupt
    kill_at = total // 2 + 1

    class _Killed(Exception):
        pass

    def kill(step: int, losses: dict[str, float]) -> None:
        if step == kill_at:
            raise _Killed

    with tempfile.TemporaryDirectory() as tmp:
        store = CheckpointStore(tmp)
        try:
            _unlearn_once(strategy_info, problem, original, splits, seed, run_params,
                          checkpoints=store, on_step=kill)
        except _Killed:
            pass
        _expect(store.exists, f"{where}: no checkpoint was written before step {kill_at}")
        resumed, rhistory, _ = _unlearn_once(strategy_info, problem, original, splits, seed,
                                             run_params, checkpoints=CheckpointStore(tmp))
    _expect(rhistory.resumed_from is not None,
            f"{where}: the second run did not resume from the checkpoint")
    _expect(rhistory.num_steps == total,
            f"{where}: the resumed run's History has {rhistory.num_steps} steps, the "
            f"uninterrupted one {total}")
    differ = _changed(resumed, _snapshot(full))
    _expect(not differ, f"{where}: a run resumed at step {kill_at - 1} ends with other "
            f"weights than an uninterrupted run ({differ[:5]}); state built in prepare() "
            "must depend only on the data and RunContext.seed")


# -- selectors -------------------------------------------------------------------------
def _selection_kwargs(cls: type, problem: TinyProblem) -> dict[str, Any]:
    """``{"context": ...}`` built from the tiny problem, for selectors that take one."""
    import inspect

    from erasus.selection import SelectionContext

    if "context" not in inspect.signature(cls.select).parameters:
        return {}
    return {"context": SelectionContext(
        retain=problem.retain, test=problem.test, info=problem.info,
        record=getattr(problem, "record", None),
        forget_train_indices=getattr(problem, "forget_train_indices", None),
        collate_fn=problem.collate_fn)}


def check_selector(selector_info: ComponentInfo, adapter_info: ComponentInfo | None,
                   seed: int = 0, *, budgets: tuple[float | int, ...] = (0.5, 1.0, 3)) -> None:
    """A selector on the tiny forget set, for fractional and count budgets.

    Checks: the indices are unique ints in ``[0, len(forget))``, ``resolve_budget(budget,
    n)`` of them, with as many finite scores; the choice depends only on the data and the
    seed (not on a shuffled loader the dataset came in, nor on the global RNG); the model
    is not modified. A selector declaring ``supports_partial_budget = False`` must refuse a
    partial budget with an error.
    """
    import numpy as np
    import pydantic
    import torch
    from torch.utils.data import DataLoader
    from torch.utils.data.dataloader import default_collate

    from erasus.data import unwrap
    from erasus.errors import ErasusError
    from erasus.selection import Selection, Selector, resolve_budget

    _need_adapter(selector_info, adapter_info)
    assert adapter_info is not None
    cls = selector_info.cls
    label = _label(selector_info)
    where = f"{label} on model '{adapter_info.name}'"
    _expect(issubclass(cls, Selector), f"{label} is not a subclass of Selector")
    _expect("budget" in cls.Params.model_fields,
            f"{label}: its Params must extend erasus.selection.SelectorParams (no 'budget')")
    partial_ok = bool(getattr(cls, "supports_partial_budget", True))
    problem = component_problem(selector_info, adapter_info.cls, seed)
    adapter = problem.adapter
    forget = problem.forget
    extra = _selection_kwargs(cls, problem)
    n = len(forget)
    before = _snapshot(adapter)

    for budget in budgets:
        k = resolve_budget(budget, n)
        case = f"{where}, budget {budget!r} of {n}"
        if not partial_ok and k < n:
            try:
                selector = cls(cls.Params(budget=budget))
                got = selector.select(adapter, forget, seed=seed,
                                      collate_fn=problem.collate_fn, **extra)
            except (pydantic.ValidationError, ErasusError):
                continue
            raise ConformanceError(
                f"{case}: the selector declares supports_partial_budget = False but returned "
                f"{len(got.indices)} examples instead of refusing the budget with an error")
        selector = cls(cls.Params(budget=budget))
        torch.manual_seed(1234)
        np.random.seed(1234)
        selection = selector.select(adapter, forget, seed=seed, collate_fn=problem.collate_fn,
                                    **extra)
        _expect(isinstance(selection, Selection),
                f"{case}: select() must return an erasus.selection.Selection")
        indices = np.asarray(selection.indices)
        scores = np.asarray(selection.scores)
        _expect(indices.ndim == 1 and (indices.size == 0
                                       or np.issubdtype(indices.dtype, np.integer)),
                f"{case}: indices must be a 1-d integer array, got dtype {indices.dtype} "
                f"shape {indices.shape}")
        _expect(len(indices) == k, f"{case}: expected resolve_budget = {k} indices, got "
                f"{len(indices)}")
        _expect(len(set(indices.tolist())) == len(indices), f"{case}: indices repeat")
        _expect(bool(((indices >= 0) & (indices < n)).all()),
                f"{case}: indices outside [0, {n}): {indices.tolist()}")
        _expect(scores.shape == indices.shape,
                f"{case}: {len(scores)} scores for {len(indices)} indices")
        _expect(np.issubdtype(scores.dtype, np.number) and bool(np.isfinite(scores).all()),
                f"{case}: scores are not all finite numbers: {scores.tolist()}")

        # What the API does with a DataLoader: unwrap it and select on the dataset.
        loader = DataLoader(forget, batch_size=7, shuffle=True,
                            collate_fn=problem.collate_fn or default_collate,
                            generator=torch.Generator().manual_seed(seed + 1))
        for _ in loader:  # iterating a shuffled loader consumes RNG state, as training does
            pass
        dataset, collate_fn, _ = unwrap(loader)
        torch.manual_seed(4321)
        np.random.seed(4321)
        again = cls(cls.Params(budget=budget)).select(adapter, dataset, seed=seed,
                                                      collate_fn=collate_fn, **extra)
        _expect(np.array_equal(np.asarray(again.indices), indices),
                f"{case}: selecting again with the same seed (on the dataset of a shuffled "
                f"DataLoader, after other global RNG draws) gave other indices: "
                f"{np.asarray(again.indices).tolist()} vs {indices.tolist()}; indices must be "
                "dataset positions and depend only on the data and the seed")
    changed = _changed(adapter, before)
    _expect(not changed, f"{where} modified the model's weights ({changed[:5]})")


# -- metrics ---------------------------------------------------------------------------
def _measure(metric: Any, ctx: Any, where: str) -> Any:
    from erasus.evaluation import Measurement

    result = metric.compute(ctx)
    if isinstance(result, dict):
        result = Measurement(values=dict(result))
    _expect(isinstance(result, Measurement),
            f"{where}: compute() must return a Measurement or a dict of floats, got "
            f"{type(result).__name__}")
    return result


def _check_values(measurement: Any, outputs: tuple[str, ...], where: str) -> None:
    import json

    values = measurement.values
    missing = [o for o in outputs if o not in values]
    _expect(not missing, f"{where}: declared outputs {missing} are missing from the values "
            f"{sorted(values)}")
    extra = [k for k in values if k not in outputs]
    _expect(not extra, f"{where}: values {extra} are not declared in 'outputs' "
            f"{list(outputs)}")
    for key in outputs:
        value = values[key]
        ok = not isinstance(value, bool)
        try:
            ok = ok and math.isfinite(float(value))
        except (TypeError, ValueError):
            ok = False
        _expect(ok, f"{where}: value '{key}' is not a finite number: {value!r}")
    try:
        json.dumps(measurement.details, default=float)  # how the pipeline writes them
    except (TypeError, ValueError) as exc:
        raise ConformanceError(f"{where}: details are not JSON-serialisable "
                               f"(metrics.json): {exc}") from None


def _perturbed(adapter: ModelAdapter, seed: int, scale: float) -> ModelAdapter:
    import torch

    copy = adapter.clone()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in copy.model.parameters():
            if p.is_floating_point():
                spread = p.float().std(correction=0)  # 0-dim weights: a logit scale
                p.add_(torch.randn(p.shape, generator=g).to(p) * scale * (spread + 1e-3))
    return copy


def check_metric(metric_info: ComponentInfo, adapter_info: ComponentInfo | None,
                 seed: int = 0, *, registry: Registry | None = None) -> None:
    """A metric on the tiny problem: every declared output present, finite, reproducible.

    Model-scope metrics get an :class:`~erasus.evaluation.EvalContext` of the tiny model;
    run-scope metrics a :class:`~erasus.evaluation.RunEvalContext` whose results hold
    their ``requires`` metrics computed on the original, a perturbed "unlearned" and a
    perturbed "oracle" copy, whose ``contexts`` are those three models' evaluation
    contexts, with :data:`RUN_INFO` as the run facts.
    """
    from erasus.evaluation import ROLES, EvalContext, Metric, RunEvalContext

    _need_adapter(metric_info, adapter_info)
    assert adapter_info is not None
    cls = metric_info.cls
    label = _label(metric_info)
    where = f"{label} on model '{adapter_info.name}'"
    _expect(issubclass(cls, Metric), f"{label} is not a subclass of Metric")
    outputs = tuple(getattr(cls, "outputs", ()))
    _expect(outputs, f"{label} declares no 'outputs' (the names of the values it computes)")
    scope = getattr(cls, "scope", "model")
    _expect(scope in ("model", "run"), f"{label}: scope must be 'model' or 'run', got "
            f"{scope!r}")
    problem = tiny_problem(adapter_info.cls, seed)
    splits = tiny_splits(problem, adapter_info)

    if scope == "model":
        ctx = EvalContext(problem.adapter, splits, role="unlearned")
        first = _measure(cls(), ctx, where)
        _check_values(first, outputs, where)
        second = _measure(cls(), ctx, where)
        _expect(second.values == first.values,
                f"{where} is not reproducible on the same model: {first.values} then "
                f"{second.values}")
        return

    if registry is None:
        from erasus.plugins import load_registry

        registry = load_registry()
    adapters = {"original": problem.adapter,
                "unlearned": _perturbed(problem.adapter, seed + 1, 0.3),
                "oracle": _perturbed(problem.adapter, seed + 2, 0.3)}
    results: dict[str, dict[str, float]] = {role: {} for role in ROLES}
    contexts = {role: EvalContext(adapters[role], splits, role=role) for role in ROLES}
    for required in getattr(cls, "requires", ()):
        rinfo = registry.get("metric", required)
        _expect(getattr(rinfo.cls, "scope", "model") == "model",
                f"{label} requires metric '{required}', which is not a model-scope metric")
        for role in ROLES:
            results[role].update(_measure(rinfo.cls(), contexts[role], f"{where} (required "
                                          f"'{required}', {role})").values)
    ctx = RunEvalContext(results=results, run_info=dict(RUN_INFO), splits=splits,
                         contexts=contexts)
    first = _measure(cls(), ctx, where)
    _check_values(first, outputs, where)
    second = _measure(cls(), ctx, where)
    _expect(second.values == first.values,
            f"{where} is not reproducible: {first.values} then {second.values}")


# -- dataset providers and reporters ----------------------------------------------------
def check_dataset(dataset_info: ComponentInfo, seed: int = 0) -> None:
    """A dataset provider with default parameters: splits that partition ``train``,
    reproducible for a seed."""
    from erasus.data import DatasetProvider, Splits

    cls = dataset_info.cls
    label = _label(dataset_info)
    _expect(issubclass(cls, DatasetProvider), f"{label} is not a subclass of DatasetProvider")
    splits = cls().load(seed=seed)
    _expect(isinstance(splits, Splits), f"{label}: load() must return erasus.data.Splits")
    for split in ("forget", "retain", "test"):
        _expect(len(splits.get(split)) > 0, f"{label}: the '{split}' split is empty")
    _expect(len(splits.forget) + len(splits.retain) == len(splits.train),
            f"{label}: forget ({len(splits.forget)}) and retain ({len(splits.retain)}) do not "
            f"partition train ({len(splits.train)})")
    fi = list(splits.forget_indices)
    _expect(len(fi) == len(splits.forget) and len(set(fi)) == len(fi)
            and all(0 <= int(i) < len(splits.train) for i in fi),
            f"{label}: forget_indices must be {len(splits.forget)} distinct positions in "
            "train")
    _expect(_same(splits.train[fi[0]], splits.forget[0]) if fi else True,
            f"{label}: forget_indices[0] is not the position of forget[0] in train")
    _expect(isinstance(splits.info.modality, str) and splits.info.modality,
            f"{label}: info.modality must name the data's modality")
    again = cls().load(seed=seed)
    _expect(list(again.forget_indices) == fi,
            f"{label}: two loads with seed {seed} chose different forget examples")


def _summary() -> Any:
    from erasus.reporting import RunSummary

    values = {"original": {"UA": 0.0, "RA": 100.0, "TA": 95.0},
              "unlearned": {"UA": 8.0, "RA": 98.0, "TA": 93.5},
              "oracle": {"UA": 6.0, "RA": 99.0, "TA": 94.0}}
    return RunSummary(
        config={"seed": 0, "model": {"name": "classifier"}, "data": {"name": "digits"},
                "selector": {"name": "full"}, "strategy": {"name": "gradient_ascent"},
                "metrics": ["accuracy"]},
        metrics={**values, "run": {"avg_gap": 1.17}, "details": {},
                 "run_info": dict(RUN_INFO)},
        history={"steps": [{"loss": 1.0 - 0.1 * i, "lr": 1e-3, "epoch": 0.0,
                            "step": float(i + 1)} for i in range(5)],
                 "resumed_from": None},
        selection={"indices": [0, 1, 2], "scores": [1.0, 1.0, 1.0], "info": {},
                   "train_indices": [4, 9, 12]},
        timings={"unlearn_seconds": 0.5, "oracle_seconds": 2.0},
    )


def _report_context() -> Any:
    """A :class:`~erasus.reporting.ReportContext` over the core's tiny trained classifier:
    it as the original and the oracle, a copy of it as the unlearned model."""
    from erasus.builtin.models.classifier import ClassifierAdapter
    from erasus.data import Splits
    from erasus.reporting import ReportContext

    problem = tiny_problem(ClassifierAdapter, 0)
    train = problem.forget  # not read by reporters; Splits needs one
    splits = Splits(train=train, forget=problem.forget, retain=problem.retain,
                    test=problem.test, info=problem.info, collate_fn=problem.collate_fn)
    adapter = problem.adapter
    return ReportContext(models={"original": adapter, "unlearned": adapter.clone(),
                                 "oracle": adapter.clone()}, splits=splits, seed=0,
                         batch_size=64)


def check_reporter(reporter_info: ComponentInfo) -> None:
    """A reporter writes non-empty files inside the run directory and returns their paths.

    It gets a finished run to report on: ``collect`` with the tiny classifier's models,
    then ``report`` with a summary (holding gradient norms when the reporter ``records``
    them). A reporter that writes nothing for one run (a comparison) must write its files
    from ``compare`` over two runs instead.
    """
    import shutil
    import tempfile
    from pathlib import Path

    from erasus.reporting import Reporter

    cls = reporter_info.cls
    label = _label(reporter_info)
    _expect(issubclass(cls, Reporter), f"{label} is not a subclass of Reporter")
    context = _report_context()
    summary = _summary()
    if "gradient_norms" in cls.records:
        names = [n for n, _ in context.models["unlearned"].model.named_parameters()]
        summary["history"]["gradient_norms"] = [
            {"step": i + 1, "norms": {n: 1.0 / (i + 1) for n in names}} for i in range(5)]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        run_dir.mkdir()
        collected = cls().collect(run_dir, context)
        _expect(isinstance(collected, list),
                f"{label}: collect() must return the list of files it wrote")
        paths = cls().report(run_dir, summary)
        _expect(isinstance(paths, list),
                f"{label}: report() must return the list of files it wrote")
        root = run_dir
        if not paths:
            other = Path(tmp) / "other"
            shutil.copytree(run_dir, other)
            root = Path(tmp) / "comparison"
            paths = cls().compare([run_dir, other], [summary, summary], root)
            _expect(isinstance(paths, list) and paths,
                    f"{label}: wrote nothing, neither from report() after collect() nor "
                    "from compare() over two runs")
        for path in paths:
            path = Path(path)
            _expect(path.is_file() and path.stat().st_size > 0,
                    f"{label}: returned {path}, which is not a non-empty file")
            _expect(path.resolve().is_relative_to(root.resolve()),
                    f"{label}: wrote {path} outside {root}")


class PluginSuite:
    """Every conformance case of one plugin, ready for a plugin's test module.

    The plugin is registered in-process beside the built-in plugin, so the cases do not
    depend on which other plugins are installed or on ``ERASUS_PLUGINS``::

        SUITE = conformance.PluginSuite("llm", erasus_llm.plugin)
        globals().update(SUITE.tests())   # test_model_adapter, test_strategy, ...

    The case lists (``models``, ``strategies``, ``selectors``, ``metrics``, ``datasets``,
    ``reporters``) are attributes, for a test that asserts which cases exist.
    """

    def __init__(self, name: str, module: object) -> None:
        from erasus.plugins import get_plugin_manager

        self.name = name
        self.registry = get_plugin_manager(entrypoints=False, strict=True,
                                           plugins=((name, module),)).registry
        self.models = model_cases(self.registry, plugin=name)
        self.strategies = strategy_cases(self.registry, plugin=name)
        self.selectors = selector_cases(self.registry, plugin=name)
        self.metrics = metric_cases(self.registry, plugin=name)
        self.datasets = dataset_cases(self.registry, plugin=name)
        self.reporters = reporter_cases(self.registry, plugin=name)

    def tests(self, *, resume: set[str] | None = None) -> dict[str, Any]:
        """The parametrized test functions, by name, for every kind that has cases
        (``resume``: the strategies to resume-check; default all)."""
        import pytest

        registry = self.registry
        resumed = [p for p in self.strategies if resume is None or p.values[0].name in resume]

        @pytest.mark.parametrize("adapter", self.models)
        def test_model_adapter(adapter: Any) -> None:
            check_model_adapter(adapter)

        @pytest.mark.parametrize(("strategy", "adapter"), self.strategies)
        def test_strategy(strategy: Any, adapter: Any) -> None:
            check_strategy(strategy, adapter)

        @pytest.mark.parametrize(("strategy", "adapter"), resumed)
        def test_strategy_resume(strategy: Any, adapter: Any) -> None:
            check_strategy_resume(strategy, adapter)

        @pytest.mark.parametrize(("selector", "adapter"), self.selectors)
        def test_selector(selector: Any, adapter: Any) -> None:
            check_selector(selector, adapter)

        @pytest.mark.parametrize(("metric", "adapter"), self.metrics)
        def test_metric(metric: Any, adapter: Any) -> None:
            check_metric(metric, adapter, registry=registry)

        @pytest.mark.parametrize("dataset", self.datasets)
        def test_dataset(dataset: Any) -> None:
            check_dataset(dataset)

        @pytest.mark.parametrize("reporter", self.reporters)
        def test_reporter(reporter: Any) -> None:
            check_reporter(reporter)

        tests = [(test_model_adapter, self.models), (test_strategy, self.strategies),
                 (test_strategy_resume, resumed), (test_selector, self.selectors),
                 (test_metric, self.metrics), (test_dataset, self.datasets),
                 (test_reporter, self.reporters)]
        # a kind with no case gets no test (rather than pytest's empty-parameter skip)
        return {f.__name__: f for f, cases in tests if cases}
