"""The built-in plugin: registers the core's components through the public hooks.

Each kind's components are listed as ``"module:Class"`` paths in the ``CATALOG`` of its
subpackage (``erasus.builtin.selectors`` ...); a hook imports them only when called, and
those modules import torch only inside functions, so building the registry
(``erasus list-plugins``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from erasus.hookspecs import hookimpl


def _register(package: str, register: Any) -> None:
    catalog = importlib.import_module(f"erasus.builtin.{package}").CATALOG
    for path in catalog:
        module, _, attr = path.partition(":")
        register(getattr(importlib.import_module(module), attr))


@hookimpl
def erasus_register_models(register: Any) -> None:
    _register("models", register)


@hookimpl
def erasus_register_selectors(register: Any) -> None:
    _register("selectors", register)


@hookimpl
def erasus_register_strategies(register: Any) -> None:
    _register("strategies", register)


@hookimpl
def erasus_register_losses(register: Any) -> None:
    _register("losses", register)


@hookimpl
def erasus_register_metrics(register: Any) -> None:
    _register("metrics", register)


@hookimpl
def erasus_register_datasets(register: Any) -> None:
    _register("datasets", register)


@hookimpl
def erasus_register_reporters(register: Any) -> None:
    _register("reporters", register)


@hookimpl
def erasus_register_trackers(register: Any) -> None:
    _register("trackers", register)
