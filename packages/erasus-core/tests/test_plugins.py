"""Plugin manager behaviour: loading, selection, containment of bad plugins, strict mode.

Fake plugins are in-process modules (``types.ModuleType``) or classes carrying
``@erasus.hookimpl`` functions; fake *installed* plugins are real distributions written
to a temporary directory (``*.dist-info`` with ``entry_points.txt``) put on ``sys.path``,
so ``importlib.metadata`` finds them exactly as it finds installed packages.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import textwrap
import types
from typing import Any

import erasus
import pytest
from erasus.components import KINDS
from erasus.errors import PluginError
from erasus.hookspecs import hookimpl
from erasus.plugins import get_plugin_manager
from erasus.strategy import LossStrategy

_ids = itertools.count()


def _strategy(name: str, base: type = LossStrategy) -> type:
    """A minimal component class registered under ``name``."""
    return type(f"S_{name}", (base,), {"__doc__": "A fake strategy.", "name": name,
                                        "paper": None})


def _module(name: str, **functions: Any) -> types.ModuleType:
    """An in-process plugin module holding ``functions``."""
    module = types.ModuleType(name)
    for attr, fn in functions.items():
        setattr(module, attr, fn)
    return module


def _registering(*classes: type):
    @hookimpl
    def erasus_register_strategies(register):
        for cls in classes:
            register(cls)

    return erasus_register_strategies


def _pm(*plugins: tuple[str, object], strict: bool | None = False):
    return get_plugin_manager(entrypoints=False, strict=strict, plugins=plugins)


# -- installed (entry-point) plugins --------------------------------------------------------
@pytest.fixture
def install(tmp_path, monkeypatch):
    """Install fake distributions: ``install({ep_name: module_source}, dist="fakeplug")``."""
    created: list[str] = []

    def _install(plugins: dict[str, str], dist: str = "fakeplug") -> dict[str, str]:
        n = next(_ids)
        root = tmp_path / f"site{n}"
        info = root / f"{dist}-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        modules = {}
        lines = ["[erasus]"]
        for ep_name, source in plugins.items():
            module = f"fakeplug_{ep_name}_{n}"
            (root / f"{module}.py").write_text(textwrap.dedent(source))
            lines.append(f"{ep_name} = {module}")
            modules[ep_name] = module
            created.append(module)
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        monkeypatch.syspath_prepend(str(root))
        return modules

    yield _install
    for module in created:
        sys.modules.pop(module, None)


GOOD = """
    import erasus
    from erasus.strategy import LossStrategy

    class Good(LossStrategy):
        '''A strategy from an installed plugin.'''
        name = "{name}"
        paper = None

    @erasus.hookimpl
    def erasus_register_strategies(register):
        register(Good)
"""

BROKEN = """
    import erasus
    raise RuntimeError("this plugin cannot be imported")
"""


def test_an_installed_plugin_loads_with_its_package_and_version(install):
    modules = install({"good": GOOD.format(name="fake_installed")})
    pm = get_plugin_manager(strict=False)
    record = pm.records["good"]
    assert record.status == "loaded"
    assert (record.package, record.version, record.module) == ("fakeplug", "0.1",
                                                               modules["good"])
    assert record.hooks == ["erasus_register_strategies"]
    info = pm.registry.get("strategy", "fake_installed")
    assert (info.plugin, info.package, info.version) == ("good", "fakeplug", "0.1")


def test_a_plugin_that_fails_to_import_is_recorded_and_the_rest_keep_working(install):
    install({"broken": BROKEN, "good": GOOD.format(name="fake_survivor")})
    pm = get_plugin_manager(strict=False)
    record = pm.records["broken"]
    assert record.status == "failed"
    assert "import failed" in record.error
    assert "RuntimeError: this plugin cannot be imported" in record.error
    assert record in pm.failures
    assert pm.records["good"].status == "loaded"
    assert pm.records["builtin"].status == "loaded"
    assert "fake_survivor" in pm.registry.names("strategy")
    assert "gradient_ascent" in pm.registry.names("strategy")


def test_erasus_plugins_selects_which_installed_plugins_load(install, monkeypatch):
    modules = install({"broken": BROKEN, "good": GOOD.format(name="fake_selected"),
                       "other": GOOD.format(name="fake_unselected")})
    monkeypatch.setenv("ERASUS_PLUGINS", " good , ")
    pm = get_plugin_manager(strict=False)
    assert pm.records["good"].status == "loaded"
    for name in ("broken", "other"):
        assert pm.records[name].status == "disabled"
        assert modules[name] not in sys.modules  # a disabled plugin is never imported
    assert pm.failures == []
    names = pm.registry.names("strategy")
    assert "fake_selected" in names and "fake_unselected" not in names

    monkeypatch.setenv("ERASUS_PLUGINS", "")
    pm = get_plugin_manager(strict=False)
    assert {r.name for r in pm.records.values() if r.status == "loaded"} == {"builtin"}
    assert all(r.status == "disabled" for r in pm.records.values() if not r.builtin)
    assert "gradient_ascent" in pm.registry.names("strategy")


def test_strict_mode_raises_on_an_import_failure(install, monkeypatch):
    install({"broken": BROKEN})
    monkeypatch.setenv("ERASUS_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'broken' failed: import failed: "
                       "RuntimeError: this plugin cannot be imported"):
        get_plugin_manager()


# -- the built-in plugin ------------------------------------------------------------------
def test_the_builtin_plugin_is_always_loaded_through_the_hooks(monkeypatch):
    monkeypatch.setenv("ERASUS_PLUGINS", "")
    pm = get_plugin_manager()
    record = pm.records["builtin"]
    assert record.builtin and record.status == "loaded"
    assert record.package == "erasus" and record.version == erasus.__version__
    assert record.hooks == sorted(["erasus_register_models", "erasus_register_selectors",
                                   "erasus_register_strategies", "erasus_register_losses",
                                   "erasus_register_metrics", "erasus_register_datasets",
                                   "erasus_register_reporters", "erasus_register_trackers"])
    for hook in record.hooks:
        impls = getattr(pm.hook, hook).get_hookimpls()
        assert [i.plugin_name for i in impls] == ["builtin"]
    registry = pm.registry
    for kind in ("model", "selector", "strategy", "metric", "dataset", "reporter", "tracker"):
        entries = list(registry.entries(kind))
        assert entries, f"the built-in plugin registers no {kind}"
        assert {e.plugin for e in entries} == {"builtin"}
    assert registry.by_plugin("builtin")["strategy"] == registry.names("strategy")


def test_the_builtin_plugin_cannot_be_disabled(monkeypatch):
    monkeypatch.setenv("ERASUS_PLUGINS", "sample")
    pm = get_plugin_manager()
    assert pm.records["builtin"].status == "loaded"
    assert "classifier" in pm.registry.names("model")


def test_each_manager_is_fresh():
    fake = _module("fresh_plugin", erasus_register_strategies=_registering(
        _strategy("fake_fresh")))
    pm = _pm(("fresh", fake))
    assert "fake_fresh" in pm.registry.names("strategy")
    assert "fake_fresh" not in _pm().registry.names("strategy")
    pm.unregister(name="fresh")
    pm._registry = None
    assert "fake_fresh" not in pm.registry.names("strategy")


# -- bad plugins are contained --------------------------------------------------------------
def _bad_signature():
    @hookimpl
    def erasus_register_strategies(register, unknown_argument):
        register(_strategy("fake_never"))

    return _module("bad_signature", erasus_register_strategies=erasus_register_strategies)


def _misspelt():
    @hookimpl
    def erasus_register_strategys(register):
        register(_strategy("fake_never"))

    return _module("misspelt", erasus_register_strategys=erasus_register_strategys)


def _undecorated():
    def erasus_register_strategies(register):
        register(_strategy("fake_never"))

    return _module("undecorated", erasus_register_strategies=erasus_register_strategies)


def _raising():
    @hookimpl
    def erasus_register_strategies(register):
        register(_strategy("fake_half_registered"))
        raise RuntimeError("registration exploded")

    return _module("raising", erasus_register_strategies=erasus_register_strategies)


def _nameless():
    class Nameless(LossStrategy):
        """A strategy without a name."""

        paper = None

    return _module("nameless", erasus_register_strategies=_registering(Nameless))


def _duplicate_builtin():
    return _module("dup_builtin", erasus_register_strategies=_registering(
        _strategy("gradient_ascent")))


# (factory, what the recorded error must say, fails when: "load" or "registry")
BAD_PLUGINS = {
    "bad_signature": (_bad_signature, r"PluginValidationError: .*erasus_register_strategies"
                      r".*\{'unknown_argument'\} are declared in the hookimpl but can not be "
                      r"found in the hookspec", "load"),
    "misspelt_hook": (_misspelt, r"unknown hook 'erasus_register_strategys' \(did you mean "
                      r"'erasus_register_strategies'\?\)", "load"),
    "undecorated": (_undecorated, r"erasus_register_strategies not decorated with "
                    r"@erasus.hookimpl", "load"),
    "raising_hook": (_raising, r"erasus_register_strategies failed: RuntimeError: "
                     r"registration exploded", "registry"),
    "nameless_component": (_nameless, r"strategy class \S*Nameless needs a class attribute "
                           r"'name' in snake_case \(got None\)", "registry"),
    "duplicate_of_builtin": (_duplicate_builtin, r"strategy 'gradient_ascent' is registered "
                             r"twice: by plugin 'builtin' .* and by plugin 'bad'", "registry"),
}


@pytest.mark.parametrize("case", list(BAD_PLUGINS))
def test_a_bad_plugin_is_recorded_and_skipped(case):
    factory, message, _ = BAD_PLUGINS[case]
    good = _module("good", erasus_register_strategies=_registering(_strategy("fake_good")))
    pm = _pm(("bad", factory()), ("good", good))
    registry = pm.registry
    record = pm.records["bad"]
    assert record.status == "failed"
    assert pm.failures == [record]
    assert re.search(message, record.error, re.DOTALL), record.error
    assert pm.get_plugin("bad") is None  # unregistered: its hooks never run again
    assert "fake_good" in registry.names("strategy")
    assert pm.records["good"].status == "loaded"
    assert "fake_never" not in registry.names("strategy")
    assert "fake_half_registered" not in registry.names("strategy")
    assert registry.get("strategy", "gradient_ascent").plugin == "builtin"
    assert not registry.by_plugin("bad")


@pytest.mark.parametrize("case", list(BAD_PLUGINS))
@pytest.mark.parametrize("how", ["env", "argument"])
def test_strict_mode_raises_for_a_bad_plugin(case, how, monkeypatch):
    factory, message, when = BAD_PLUGINS[case]
    if how == "env":
        monkeypatch.setenv("ERASUS_STRICT_PLUGINS", "1")
        strict = None
    else:
        strict = True
    with pytest.raises(PluginError, match=r"(?s)plugin 'bad' failed: .*" + message):
        pm = get_plugin_manager(entrypoints=False, strict=strict,
                                plugins=(("bad", factory()),))
        assert when == "registry", "a load-time failure must raise while loading"
        _ = pm.registry


def test_a_duplicate_name_across_two_plugins_names_both_and_skips_the_second():
    first_cls = _strategy("fake_shared")
    second_cls = _strategy("fake_shared")
    first = _module("first_mod", erasus_register_strategies=_registering(first_cls))
    second = _module("second_mod", erasus_register_strategies=_registering(
        _strategy("fake_only_in_second"), second_cls))
    pm = _pm(("first", first), ("second", second))
    registry = pm.registry
    assert registry.get("strategy", "fake_shared").cls is first_cls
    assert registry.get("strategy", "fake_shared").plugin == "first"
    assert pm.records["first"].status == "loaded"
    record = pm.records["second"]
    assert record.status == "failed"
    assert "by plugin 'first'" in record.error and "by plugin 'second'" in record.error
    assert "strategy 'fake_shared' is registered twice" in record.error
    # The whole second plugin is skipped, not just its clashing component.
    assert "fake_only_in_second" not in registry.names("strategy")
    assert not registry.by_plugin("second")


def test_the_same_name_in_different_kinds_is_not_a_duplicate():
    from erasus.evaluation import Metric

    metric = type("M", (Metric,), {"__doc__": "A fake metric.", "name": "fake_both",
                                   "paper": None, "outputs": ("x",)})

    @hookimpl
    def erasus_register_metrics(register):
        register(metric)

    plugin = _module("both", erasus_register_strategies=_registering(_strategy("fake_both")),
                     erasus_register_metrics=erasus_register_metrics)
    registry = _pm(("both", plugin)).registry
    assert {i.kind for i in registry.find("fake_both")} == {"strategy", "metric"}


def test_a_component_without_its_own_name_is_rejected():
    parent = _strategy("fake_parent")
    child = type("Child", (parent,), {"__doc__": "Inherits the name.", "paper": None})
    plugin = _module("inherits", erasus_register_strategies=_registering(child))
    pm = _pm(("inherits", plugin))
    _ = pm.registry
    assert pm.records["inherits"].status == "failed"
    assert "class Child needs a class attribute 'name' in snake_case (got None)" in \
        pm.records["inherits"].error

    bad_name = _strategy("Not-Snake")
    pm = _pm(("badname", _module("badname", erasus_register_strategies=_registering(
        bad_name))))
    _ = pm.registry
    assert "(got 'Not-Snake')" in pm.records["badname"].error


def test_registering_an_instance_instead_of_a_class_is_rejected():
    instance = _strategy("fake_instance")()

    @hookimpl
    def erasus_register_strategies(register):
        register(instance)

    pm = _pm(("inst", _module("inst", erasus_register_strategies=erasus_register_strategies)))
    _ = pm.registry
    assert "register the class itself" in pm.records["inst"].error


def test_a_hook_may_accept_a_subset_of_the_spec_arguments():
    seen = []

    class Observer:
        @staticmethod
        @hookimpl
        def erasus_step_end(step):
            seen.append(step)

    pm = _pm(("observer", Observer))
    pm.hook.erasus_step_end(run=None, step=3, losses={"loss": 1.0})
    assert seen == [3]


# -- every kind registers through its hook --------------------------------------------------
def test_every_kind_registers_through_its_hook():
    from erasus.adapters import ModelAdapter
    from erasus.data import DatasetProvider
    from erasus.evaluation import Metric
    from erasus.losses import Loss
    from erasus.reporting import Reporter, Tracker
    from erasus.selection import Selector

    bases = {"model": ModelAdapter, "selector": Selector, "strategy": LossStrategy,
             "loss": Loss, "metric": Metric, "dataset": DatasetProvider,
             "reporter": Reporter, "tracker": Tracker}
    assert set(bases) == set(KINDS)
    functions = {}
    for kind, hook_name in KINDS.items():
        cls = type(f"Fake{kind}", (bases[kind],), {"__doc__": "Fake.", "name": f"fake_{kind}",
                                                   "paper": None})
        functions[hook_name] = _registering(cls)
        functions[hook_name].__name__ = hook_name
    # erasus_register_models, erasus_register_selectors, erasus_register_strategies,
    # erasus_register_losses, erasus_register_metrics, erasus_register_datasets,
    # erasus_register_reporters and erasus_register_trackers, each with one class.
    plugin = _module("every_kind", **functions)
    pm = _pm(("every", plugin))
    assert pm.records["every"].hooks == sorted(KINDS.values())
    registry = pm.registry
    for kind in KINDS:
        info = registry.get(kind, f"fake_{kind}")
        assert info.plugin == "every" and info.cls.kind == kind
    assert registry.by_plugin("every") == {kind: [f"fake_{kind}"] for kind in KINDS}


def test_erasus_register_commands_mounts_typer_apps_and_contains_failures():
    app = types.SimpleNamespace(info=types.SimpleNamespace(name="fakecmd"))

    @hookimpl
    def erasus_register_commands(register):
        register(app)
        register(app, name="alias")

    @hookimpl
    def failing(register):
        raise RuntimeError("no commands today")

    failing.__name__ = "erasus_register_commands"
    pm = _pm(("cmds", _module("cmds", erasus_register_commands=erasus_register_commands)),
             ("broken_cmds", _module("broken_cmds", erasus_register_commands=failing)))
    commands = pm.load_commands()
    assert ("fakecmd", app, "cmds") in commands
    assert ("alias", app, "cmds") in commands
    record = pm.records["broken_cmds"]
    assert record.status == "failed"
    assert "erasus_register_commands failed: RuntimeError: no commands today" in record.error


def test_lifecycle_hooks_reach_every_plugin():
    calls: list[tuple[str, Any]] = []

    class Watcher:
        @staticmethod
        @hookimpl
        def erasus_run_start(run):
            calls.append(("erasus_run_start", run.seed))

        @staticmethod
        @hookimpl
        def erasus_step_end(run, step, losses):
            calls.append(("erasus_step_end", (step, losses["loss"])))

        @staticmethod
        @hookimpl
        def erasus_run_end(run, metrics):
            calls.append(("erasus_run_end", metrics["unlearned"]["UA"]))

    pm = _pm(("watcher", Watcher))
    assert pm.records["watcher"].hooks == ["erasus_run_end", "erasus_run_start",
                                           "erasus_step_end"]
    run = types.SimpleNamespace(config={}, run_dir=None, seed=7)
    pm.hook.erasus_run_start(run=run)
    pm.hook.erasus_step_end(run=run, step=1, losses={"loss": 0.5})
    pm.hook.erasus_run_end(run=run, metrics={"unlearned": {"UA": 12.0}})
    assert calls == [("erasus_run_start", 7), ("erasus_step_end", (1, 0.5)),
                     ("erasus_run_end", 12.0)]


# -- building the registry stays light --------------------------------------------------------
def test_building_the_registry_does_not_import_torch():
    # A finder that records who imports a heavy module first, so a failure names the
    # component module that imports torch at top level.
    code = textwrap.dedent("""
        import sys, traceback

        HEAVY = ("torch", "transformers", "diffusers", "sklearn")
        culprits = {}

        class Spy:
            @staticmethod
            def find_spec(name, path=None, target=None):
                top = name.partition(".")[0]
                if top in HEAVY and top not in culprits:
                    stack = [f for f in traceback.extract_stack()[:-1]
                             if "importlib" not in f.filename]
                    culprits[top] = [f"{f.filename}:{f.lineno}" for f in stack][-4:]
                return None

        sys.meta_path.insert(0, Spy)
        import erasus.plugins as p
        pm = p.get_plugin_manager()
        registry = pm.registry
        assert registry.names("strategy"), "no strategies registered"
        failures = [(r.name, r.error) for r in pm.failures]
        assert not failures, failures
        heavy = {m: culprits.get(m) for m in HEAVY if m in sys.modules}
        assert not heavy, f"building the registry imported {heavy}"
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]


# -- erasus.testing.packaging: the check every plugin package's tests run ------------------
def test_check_plugin_package_accepts_a_well_wired_plugin(install):
    from erasus.testing.packaging import check_plugin_package

    modules = install({"wired": GOOD.format(name="fake_wired")}, dist="wiredplug")
    check_plugin_package("wired", "wiredplug", modules["wired"])


@pytest.mark.parametrize("wrong, message", [
    ({"distribution": "otherdist"}, "belongs to wiredplug"),
    ({"module": "not_the_module"}, "points at"),
])
def test_check_plugin_package_names_what_is_miswired(install, wrong, message):
    from erasus.testing.packaging import check_plugin_package

    modules = install({"wired": GOOD.format(name="fake_wired2")}, dist="wiredplug")
    args = {"name": "wired", "distribution": "wiredplug", "module": modules["wired"], **wrong}
    with pytest.raises(AssertionError, match=message):
        check_plugin_package(**args)


def test_check_plugin_package_catches_a_plugin_that_fails_to_load(install):
    from erasus.testing.packaging import check_plugin_package

    modules = install({"broken": BROKEN}, dist="brokenplug")
    with pytest.raises(AssertionError, match="did not load: import failed"):
        check_plugin_package("broken", "brokenplug", modules["broken"])
