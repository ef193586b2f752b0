"""Conformance suites over the registry of every installed plugin, and tests of the suites.

The parametrized tests run each registered component on a tiny model of its modality, so a
component is tested the moment it is registered. The tests below them register broken
fake components and check that each suite catches them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from erasus.hookspecs import hookimpl
from erasus.plugins import get_plugin_manager
from erasus.testing import conformance as c

PM = get_plugin_manager()
REGISTRY = PM.registry


def test_every_installed_plugin_loads():
    assert [r.to_dict() for r in PM.failures] == []
    assert REGISTRY.names("model"), "no model adapter is registered"


@pytest.mark.parametrize("adapter", c.model_cases(REGISTRY))
def test_model_adapter(adapter):
    c.check_model_adapter(adapter)


@pytest.mark.parametrize(("strategy", "adapter"), c.strategy_cases(REGISTRY))
def test_strategy(strategy, adapter):
    c.check_strategy(strategy, adapter)


@pytest.mark.parametrize(("strategy", "adapter"), c.strategy_cases(REGISTRY))
def test_strategy_resume(strategy, adapter):
    c.check_strategy_resume(strategy, adapter)


@pytest.mark.parametrize(("selector", "adapter"), c.selector_cases(REGISTRY))
def test_selector(selector, adapter):
    c.check_selector(selector, adapter)


@pytest.mark.parametrize(("metric", "adapter"), c.metric_cases(REGISTRY))
def test_metric(metric, adapter):
    c.check_metric(metric, adapter, registry=REGISTRY)


@pytest.mark.parametrize("dataset", c.dataset_cases(REGISTRY))
def test_dataset(dataset):
    c.check_dataset(dataset)


@pytest.mark.parametrize("reporter", c.reporter_cases(REGISTRY))
def test_reporter(reporter):
    c.check_reporter(reporter)


# -- the suites catch broken components ---------------------------------------------------
def _registry(**hooks: Any):
    """A registry with the built-ins and one fake plugin implementing ``hooks``."""
    plugin = type("FakePlugin", (), {
        name: staticmethod(hookimpl(_registrar(classes))) for name, classes in hooks.items()})
    pm = get_plugin_manager(entrypoints=False, strict=True, plugins=(("fake", plugin),))
    return pm.registry


def _registrar(classes):
    def hook(register):
        for cls in classes:
            register(cls)
    return hook


def _case(cases, name):
    return next(p.values for p in cases if p.values[0].name == name)


def _classifier():
    return REGISTRY.get("model", "classifier")


def _strategy_info(cls):
    reg = _registry(erasus_register_strategies=[cls])
    return reg.get("strategy", cls.name)


def _fails(match, fn, *args, **kwargs):
    with pytest.raises(c.ConformanceError, match=match):
        fn(*args, **kwargs)


def _ga_base():
    from erasus.strategy import LossStrategy

    class Base(LossStrategy):
        """A fake strategy for the suite's own tests."""

        modalities = ("any",)
        paper = None
        effect = "raise_forget_loss"

        def loss(self, adapter, *, forget, retain):
            value = adapter.per_example_loss(forget).mean()
            return {"loss": -value, "forget_loss": value}

    return Base


def test_strategy_suite_accepts_a_correct_strategy():
    class Ascent(_ga_base()):
        """Gradient ascent, correctly declared."""

        name = "fake_ascent"

    c.check_strategy(_strategy_info(Ascent), _classifier())
    c.check_strategy_resume(_strategy_info(Ascent), _classifier())


def test_strategy_suite_requires_a_declared_effect():
    class Undeclared(_ga_base()):
        """No effect declared."""

        name = "fake_undeclared"
        effect = None

    _fails("declares no 'effect'", c.check_strategy, _strategy_info(Undeclared), _classifier())

    class Unknown(_ga_base()):
        """An effect the suite does not know."""

        name = "fake_unknown_effect"
        effect = "forget_more"

    _fails("must be one of", c.check_strategy, _strategy_info(Unknown), _classifier())


def test_strategy_suite_catches_the_wrong_direction():
    class Descent(_ga_base()):
        """Claims to raise the forget loss but descends it."""

        name = "fake_descent"

        def loss(self, adapter, *, forget, retain):
            return {"loss": adapter.per_example_loss(forget).mean()}

    _fails("did not raise the forget-set loss", c.check_strategy, _strategy_info(Descent),
           _classifier())

    class Ruins(_ga_base()):
        """Claims to fit the retain set but ascends its loss."""

        name = "fake_ruins_retain"
        effect = "fit_retain"
        epoch_over = "retain"

        def loss(self, adapter, *, forget, retain):
            return {"loss": -adapter.per_example_loss(retain).mean()}

    _fails("retain-set loss rose", c.check_strategy, _strategy_info(Ruins), _classifier())


def test_strategy_suite_catches_a_strategy_that_does_not_retrain():
    from erasus.strategy import LoopParams
    from pydantic import Field

    class Nudges(_ga_base()):
        """Claims to retrain from scratch but only nudges the forget loss up."""

        name = "fake_retrain"
        effect = "retrain_from_scratch"

    _fails("like unseen data", c.check_strategy, _strategy_info(Nudges), _classifier())

    class BigSteps(LoopParams):
        """Loop parameters with a huge learning rate."""

        lr: float = Field(5.0, gt=0, description="Learning rate.")
        max_abs_loss: float = Field(1e30, gt=0, description="Divergence guard.")

    class Scrambles(_ga_base()):
        """Claims to retrain from scratch but wrecks the model."""

        name = "fake_scramble"
        effect = "retrain_from_scratch"
        Params = BigSteps

    _fails("not below that of a re-initialised model", c.check_strategy,
           _strategy_info(Scrambles), _classifier())


def test_strategy_suite_catches_a_strategy_that_edits_a_copy():
    from erasus.strategy import History, Strategy

    class Copies(Strategy):
        """Unlearns a copy and leaves the adapter it was given untouched."""

        name = "fake_copies"
        paper = None
        effect = "raise_forget_loss"

        def unlearn(self, adapter, data, run):
            copy = adapter.clone()
            with __import__("torch").no_grad():
                for p in copy.model.parameters():
                    p.mul_(0.0)
            return History()

    _fails("did not change the weights", c.check_strategy, _strategy_info(Copies),
           _classifier())


def test_strategy_suite_catches_nan_and_irreproducible_weights():
    import torch
    from erasus.strategy import History, Strategy

    class Poisons(Strategy):
        """Writes a NaN into the weights."""

        name = "fake_nan"
        paper = None
        effect = "change_weights"

        def unlearn(self, adapter, data, run):
            with torch.no_grad():
                next(iter(adapter.model.parameters())).view(-1)[0] = float("nan")
            return History()

    _fails("non-finite weights", c.check_strategy, _strategy_info(Poisons), _classifier())

    class Noisy(Strategy):
        """Adds noise from an unseeded generator."""

        name = "fake_noisy"
        paper = None
        effect = "change_weights"
        calls: ClassVar[list[int]] = []

        def unlearn(self, adapter, data, run):
            self.calls.append(1)
            g = torch.Generator().manual_seed(len(self.calls))
            with torch.no_grad():
                for p in adapter.model.parameters():
                    p.add_(torch.randn(p.shape, generator=g))
            return History()

    _fails("not reproducible", c.check_strategy, _strategy_info(Noisy), _classifier())


def test_strategy_suite_catches_a_modified_reference_and_missing_steps():
    import torch

    class Meddles(_ga_base()):
        """Needs a reference model, and modifies it."""

        name = "fake_meddles"
        needs = frozenset({"reference_model"})

        def prepare(self, adapter, data, run):
            with torch.no_grad():
                next(iter(run.reference.model.parameters())).add_(1.0)

    _fails("modified the frozen reference model", c.check_strategy, _strategy_info(Meddles),
           _classifier())

    class NoSteps(_ga_base()):
        """A loss-based strategy that edits the weights but bypasses the loop."""

        name = "fake_no_steps"

        def unlearn(self, adapter, data, run):
            from erasus.strategy import History

            with torch.no_grad():
                for p in adapter.model.parameters():
                    p.mul_(0.5)
            return History()

    _fails("recorded no steps", c.check_strategy, _strategy_info(NoSteps), _classifier())


def test_resume_suite_catches_state_that_depends_on_the_run_so_far():
    class Drifts(_ga_base()):
        """Scales its loss by how many batches this instance has seen."""

        name = "fake_drifts"

        def prepare(self, adapter, data, run):
            self.seen = 0

        def loss(self, adapter, *, forget, retain):
            self.seen += 1
            value = adapter.per_example_loss(forget).mean()
            return {"loss": -value * self.seen, "forget_loss": value}

    info = _strategy_info(Drifts)
    c.check_strategy(info, _classifier())
    _fails("resumed at step", c.check_strategy_resume, info, _classifier())


def test_strategy_cases_pair_modalities_and_filter_by_plugin():
    from erasus.strategy import LossStrategy

    class Audio(LossStrategy):
        """A strategy for a modality no adapter has."""

        name = "fake_audio_only"
        modalities = ("audio",)
        paper = None
        effect = "raise_forget_loss"

    class Anything(_ga_base()):
        """A generic strategy."""

        name = "fake_generic"

    reg = _registry(erasus_register_strategies=[Audio, Anything])
    ids = {p.id for p in c.strategy_cases(reg, plugin="fake")}
    assert ids == {"fake_audio_only-no_adapter", "fake_generic-classifier"}
    all_ids = {p.id for p in c.strategy_cases(reg)}
    assert "gradient_ascent-classifier" in all_ids and "random_label-classifier" in all_ids
    assert ids <= all_ids
    info, adapter = _case(c.strategy_cases(reg), "fake_audio_only")
    assert adapter is None
    _fails("nothing can test it", c.check_strategy, info, adapter)


# -- selectors -----------------------------------------------------------------------------
def _selector(name, select, **attrs):
    from erasus.selection import Selector

    cls = type(name.title(), (Selector,), {
        "__doc__": "A fake selector.", "name": name, "paper": None, "select": select,
        **attrs})
    return _registry(erasus_register_selectors=[cls]).get("selector", name)


def _first_k(self, adapter, forget, *, seed=0, collate_fn=None):
    import numpy as np
    from erasus.selection import Selection, resolve_budget

    k = resolve_budget(self.params.budget, len(forget))
    return Selection(indices=np.arange(k), scores=np.ones(k))


def test_selector_suite_accepts_a_correct_selector():
    c.check_selector(_selector("fake_first", _first_k), _classifier())


def test_selector_suite_catches_bad_indices_and_scores():
    import numpy as np
    from erasus.selection import Selection, resolve_budget

    def repeats(self, adapter, forget, *, seed=0, collate_fn=None):
        k = resolve_budget(self.params.budget, len(forget))
        return Selection(indices=np.zeros(k, dtype=np.int64), scores=np.ones(k))

    _fails("indices repeat", c.check_selector, _selector("fake_repeats", repeats),
           _classifier())

    def ignores_budget(self, adapter, forget, *, seed=0, collate_fn=None):
        return Selection(indices=np.arange(len(forget)), scores=np.ones(len(forget)))

    _fails("expected resolve_budget", c.check_selector,
           _selector("fake_everything", ignores_budget), _classifier())

    def nan_scores(self, adapter, forget, *, seed=0, collate_fn=None):
        k = resolve_budget(self.params.budget, len(forget))
        return Selection(indices=np.arange(k), scores=np.full(k, np.nan))

    _fails("not all finite", c.check_selector, _selector("fake_nan_scores", nan_scores),
           _classifier())

    def out_of_range(self, adapter, forget, *, seed=0, collate_fn=None):
        k = resolve_budget(self.params.budget, len(forget))
        return Selection(indices=np.arange(k) + len(forget) - 1, scores=np.ones(k))

    _fails("outside", c.check_selector, _selector("fake_out_of_range", out_of_range),
           _classifier())


def test_selector_suite_catches_global_rng_and_model_edits():
    import numpy as np
    import torch
    from erasus.selection import Selection, resolve_budget

    def global_rng(self, adapter, forget, *, seed=0, collate_fn=None):
        k = resolve_budget(self.params.budget, len(forget))
        order = torch.randperm(len(forget))[:k].numpy()
        return Selection(indices=order, scores=np.ones(k))

    _fails("gave other indices", c.check_selector, _selector("fake_global_rng", global_rng),
           _classifier())

    def edits(self, adapter, forget, *, seed=0, collate_fn=None):
        with torch.no_grad():
            next(iter(adapter.model.parameters())).add_(1.0)
        return _first_k(self, adapter, forget, seed=seed)

    _fails("modified the model", c.check_selector, _selector("fake_edits", edits),
           _classifier())


def test_selector_suite_uses_the_partial_budget_declaration():
    import numpy as np
    from erasus.selection import Selection

    def whole(self, adapter, forget, *, seed=0, collate_fn=None):
        return Selection(indices=np.arange(len(forget)), scores=np.ones(len(forget)))

    # Declared whole-set-only but silently accepts a partial budget: caught.
    _fails("supports_partial_budget = False", c.check_selector,
           _selector("fake_whole", whole, supports_partial_budget=False), _classifier())

    def refuses(self, adapter, forget, *, seed=0, collate_fn=None):
        from erasus.errors import IncompatibleComponentError

        if self.params.budget != 1.0 and not (isinstance(self.params.budget, int)
                                              and self.params.budget >= len(forget)):
            raise IncompatibleComponentError("only the whole forget set")
        return whole(self, adapter, forget)

    c.check_selector(_selector("fake_refuses", refuses, supports_partial_budget=False),
                     _classifier())
    # The same selector without the declaration fails: the suite never guesses.
    with pytest.raises(Exception, match="only the whole forget set"):
        c.check_selector(_selector("fake_refuses_undeclared", refuses), _classifier())


# -- metrics -------------------------------------------------------------------------------
def _metric(name, compute, **attrs):
    from erasus.evaluation import Metric

    attrs.setdefault("outputs", ("value",))
    attrs.setdefault("modalities", ("any",))
    cls = type(name.title(), (Metric,), {
        "__doc__": "A fake metric.", "name": name, "paper": None, "compute": compute,
        **attrs})
    reg = _registry(erasus_register_metrics=[cls])
    return reg.get("metric", name), reg


def test_metric_suite_accepts_correct_model_and_run_metrics():
    def mean_forget_loss(self, ctx):
        return {"value": float(ctx.outputs("forget")["loss"].mean())}

    info, reg = _metric("fake_loss", mean_forget_loss)
    c.check_metric(info, _classifier(), registry=reg)

    def gap(self, ctx):
        return {"value": abs(ctx.results["unlearned"]["UA"] - ctx.results["oracle"]["UA"])
                + ctx.run_info["unlearn_seconds"]}

    info, reg = _metric("fake_gap", gap, scope="run", requires=("accuracy",))
    c.check_metric(info, _classifier(), registry=reg)


def test_metric_suite_catches_missing_extra_and_non_finite_values():
    info, reg = _metric("fake_missing", lambda self, ctx: {"other": 1.0})
    _fails("missing", c.check_metric, info, _classifier(), registry=reg)

    info, reg = _metric("fake_extra", lambda self, ctx: {"value": 1.0, "other": 2.0})
    _fails("not declared", c.check_metric, info, _classifier(), registry=reg)

    info, reg = _metric("fake_nan_metric", lambda self, ctx: {"value": float("nan")})
    _fails("not a finite number", c.check_metric, info, _classifier(), registry=reg)

    info, reg = _metric("fake_no_outputs", lambda self, ctx: {}, outputs=())
    _fails("declares no 'outputs'", c.check_metric, info, _classifier(), registry=reg)

    def unserialisable(self, ctx):
        from erasus.evaluation import Measurement

        return Measurement(values={"value": 1.0}, details={"blob": object()})

    info, reg = _metric("fake_blob", unserialisable)
    _fails("JSON", c.check_metric, info, _classifier(), registry=reg)


def test_metric_suite_catches_irreproducible_metrics():
    import random

    info, reg = _metric("fake_random", lambda self, ctx: {"value": random.random()})
    _fails("not reproducible", c.check_metric, info, _classifier(), registry=reg)


def test_metric_suite_catches_run_metric_requirements():
    from erasus.errors import ComponentNotFoundError

    info, reg = _metric("fake_needs_missing", lambda self, ctx: {"value": 1.0}, scope="run",
                        requires=("no_such_metric",))
    with pytest.raises(ComponentNotFoundError, match="no_such_metric"):
        c.check_metric(info, _classifier(), registry=reg)

    def reads_run_info(self, ctx):
        return {"value": float(ctx.run_info.get("nonexistent_fact", float("nan")))}

    info, reg = _metric("fake_bad_run", reads_run_info, scope="run")
    _fails("not a finite number", c.check_metric, info, _classifier(), registry=reg)


# -- model adapters ------------------------------------------------------------------------
def _adapter(name, **attrs):
    from erasus.builtin.models.classifier import ClassifierAdapter

    cls = type(name.title(), (ClassifierAdapter,), {
        "__doc__": "A fake adapter.", "name": name, "paper": None, **attrs})
    return _registry(erasus_register_models=[cls]).get("model", name)


def test_model_suite_catches_a_missing_tiny_problem():
    from erasus.adapters import ModelAdapter

    info = _adapter("fake_no_tiny", tiny_problem=classmethod(ModelAdapter.tiny_problem.__func__))
    assert not c.has_tiny_problem(info.cls)
    _fails("does not implement tiny_problem", c.check_model_adapter, info)


def _tiny_of(cls):
    """A tiny problem for a ClassifierAdapter subclass (same weights, other class)."""
    from erasus.adapters import TinyProblem

    base = c.tiny_problem(REGISTRY.get("model", "classifier").cls)
    return TinyProblem(cls(base.adapter.model, base.adapter.params), base.forget, base.retain,
                       base.test)


def test_model_suite_catches_a_batch_mean_loss_and_pickled_weights():
    import torch

    def mean_loss(self, batch):
        import torch.nn.functional as F

        return F.cross_entropy(self.logits(batch), batch["labels"])

    info = _adapter("fake_mean_loss", per_example_loss=mean_loss,
                    tiny_problem=classmethod(lambda cls, seed=0: _tiny_of(cls)))
    _fails("shape", c.check_model_adapter, info)

    def pickles(self, directory):
        from pathlib import Path

        type(self).__mro__[1].save(self, directory)
        torch.save(self.model.state_dict(), Path(directory) / "extra.weights")

    info = _adapter("fake_pickles", save=pickles,
                    tiny_problem=classmethod(lambda cls, seed=0: _tiny_of(cls)))
    _fails("pickle", c.check_model_adapter, info)

    info = _adapter("fake_good", tiny_problem=classmethod(lambda cls, seed=0: _tiny_of(cls)))
    c.check_model_adapter(info)

    def no_all(self):
        return {"head": ["head.weight"]}

    info = _adapter("fake_no_all", parameter_groups=no_all,
                    tiny_problem=classmethod(lambda cls, seed=0: _tiny_of(cls)))
    _fails("'all' group", c.check_model_adapter, info)


def test_model_suite_catches_a_lossy_round_trip():
    import torch

    def lossy_load(cls, path, params=None, info=None):
        from erasus.builtin.models.classifier import ClassifierAdapter

        adapter = ClassifierAdapter.load.__func__(cls, path, params, info)
        with torch.no_grad():
            next(iter(adapter.model.parameters())).mul_(1.5)
        return adapter

    info = _adapter("fake_lossy", load=classmethod(lossy_load),
                    tiny_problem=classmethod(lambda cls, seed=0: _tiny_of(cls)))
    _fails("other losses", c.check_model_adapter, info)


# -- datasets and reporters ----------------------------------------------------------------
def test_dataset_suite_catches_splits_that_do_not_partition_train():
    from erasus.builtin.datasets.digits import Digits

    class Overlapping(Digits):
        """Digits whose retain set also holds the forget examples."""

        name = "fake_overlap"
        paper = None

        def load(self, *, seed):
            import dataclasses

            splits = super().load(seed=seed)
            return dataclasses.replace(splits, retain=splits.train)

    info = _registry(erasus_register_datasets=[Overlapping]).get("dataset", "fake_overlap")
    _fails("do not partition", c.check_dataset, info)


def test_reporter_suite_catches_missing_files():
    from erasus.reporting import Reporter

    class Liar(Reporter):
        """Claims a file it never wrote."""

        name = "fake_liar"
        paper = None

        def report(self, run_dir, summary):
            return [run_dir / "report.html"]

    info = _registry(erasus_register_reporters=[Liar]).get("reporter", "fake_liar")
    _fails("not a non-empty file", c.check_reporter, info)


def test_plugin_suite_writes_a_test_per_kind_with_cases():
    import types

    class Ascent(_ga_base()):
        """Gradient ascent, correctly declared."""

        name = "suite_ascent"

    module = types.ModuleType("suite_plugin")
    module.erasus_register_strategies = hookimpl(_registrar([Ascent]))
    suite = c.PluginSuite("suite_plugin", module)
    tests = suite.tests()
    assert set(tests) == {"test_strategy", "test_strategy_resume"}  # no other kind has cases
    assert [p.values[0].name for p in suite.strategies] == ["suite_ascent"]
    marks = tests["test_strategy"].pytestmark
    (case,) = marks[0].args[1]
    tests["test_strategy"](*case.values)  # the generated test runs the real check
    assert suite.tests(resume=set()).keys() == {"test_strategy"}
