"""Meta-tests that keep the ecosystem honest (datasette style).

Every hook is documented and tested; every registered component, from every installed
plugin, carries the metadata the registry, the CLI and the docs rely on.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from erasus import hookspecs
from erasus.components import KINDS, Paper
from erasus.plugins import get_plugin_manager

TESTS = Path(__file__).parent
HOOKSPECS = sorted(
    name for name, fn in vars(hookspecs).items()
    if inspect.isfunction(fn) and hasattr(fn, f"{hookspecs.PROJECT_NAME}_spec"))
REGISTRY = get_plugin_manager().registry
COMPONENTS = [pytest.param(info, id=f"{info.kind}:{info.name}")
              for info in REGISTRY.entries()]


def _base_classes() -> dict[str, type]:
    from erasus.adapters import ModelAdapter
    from erasus.data import DatasetProvider
    from erasus.evaluation import Metric
    from erasus.losses import Loss
    from erasus.reporting import Reporter, Tracker
    from erasus.selection import Selector
    from erasus.strategy import Strategy

    return {"model": ModelAdapter, "selector": Selector, "strategy": Strategy, "loss": Loss,
            "metric": Metric, "dataset": DatasetProvider, "reporter": Reporter,
            "tracker": Tracker}


def test_the_hookspecs_are_found():
    assert set(KINDS.values()) <= set(HOOKSPECS)
    assert {"erasus_register_commands", "erasus_run_start", "erasus_step_end",
            "erasus_run_end"} <= set(HOOKSPECS)


@pytest.mark.parametrize("hook", HOOKSPECS)
def test_every_hookspec_has_a_one_line_docstring(hook):
    doc = getattr(hookspecs, hook).__doc__
    assert doc and doc.strip(), f"hookspec {hook} has no docstring"
    assert "\n" not in doc.strip(), f"hookspec {hook}: keep the docstring to one line"


@pytest.mark.parametrize("hook", HOOKSPECS)
def test_every_hookspec_is_exercised_by_a_test(hook):
    texts = [p.read_text() for p in sorted(TESTS.rglob("test_*.py"))
             if p.resolve() != Path(__file__).resolve()]
    assert any(hook in text for text in texts), (
        f"hook {hook} is not exercised by any test in {TESTS}; add one")


def test_every_component_kind_has_a_base_class():
    assert set(_base_classes()) == set(KINDS)


@pytest.mark.parametrize("info", COMPONENTS)
def test_every_component_has_its_own_docstring(info):
    doc = info.cls.__dict__.get("__doc__")
    assert doc and doc.strip(), (
        f"{info.kind} '{info.name}' ({info.cls.__module__}.{info.cls.__qualname__}) has no "
        "docstring of its own; its first line is the summary `erasus describe` shows")
    assert info.summary == inspect.cleandoc(doc).splitlines()[0]


@pytest.mark.parametrize("info", COMPONENTS)
def test_every_component_declares_its_paper_explicitly(info):
    assert "paper" in info.cls.__dict__, (
        f"{info.kind} '{info.name}' must set `paper` in its own class body: a "
        "erasus.components.Paper, or None when it implements no paper")
    paper = info.cls.__dict__["paper"]
    assert paper is None or isinstance(paper, Paper), (
        f"{info.kind} '{info.name}': paper must be a Paper or None, not {type(paper).__name__}")
    if paper is not None:
        assert paper.title and paper.authors and paper.year > 1900 and paper.url


def _undocumented_fields(model: type, prefix: str = "") -> list[str]:
    from pydantic import BaseModel

    missing = []
    for name, field in model.model_fields.items():
        if not (field.description or "").strip():
            missing.append(prefix + name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            missing += _undocumented_fields(annotation, f"{prefix}{name}.")
    return missing


@pytest.mark.parametrize("info", COMPONENTS)
def test_every_component_has_documented_params(info):
    from erasus.components import Params

    model = info.cls.__dict__.get("Params", getattr(info.cls, "Params", None))
    assert isinstance(model, type) and issubclass(model, Params), (
        f"{info.kind} '{info.name}': Params must be a subclass of erasus.components.Params")
    missing = _undocumented_fields(model)
    assert not missing, (
        f"{info.kind} '{info.name}': parameters without a description: {missing}; use "
        "Field(..., description=...) or an attribute docstring")


@pytest.mark.parametrize("info", COMPONENTS)
def test_every_component_subclasses_its_base_class(info):
    base = _base_classes()[info.kind]
    assert issubclass(info.cls, base), (
        f"{info.kind} '{info.name}' ({info.cls.__qualname__}) must subclass "
        f"{base.__module__}.{base.__name__}")


@pytest.mark.parametrize("info", COMPONENTS)
def test_every_component_declares_modalities_and_needs(info):
    modalities = info.cls.modalities
    assert isinstance(modalities, tuple) and modalities, (
        f"{info.kind} '{info.name}': modalities must be a non-empty tuple of names")
    assert all(isinstance(m, str) and m for m in modalities)
    needs = info.cls.needs
    assert isinstance(needs, frozenset) and all(isinstance(n, str) for n in needs), (
        f"{info.kind} '{info.name}': needs must be a frozenset of names")
