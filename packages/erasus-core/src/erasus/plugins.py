"""The plugin manager factory: entry points in, a registry of components out.

Plugins are modules (or objects) exposed under the entry-point group ``erasus``. The
built-in plugin :mod:`erasus.builtin.plugin` goes through the same hooks and is
registered first. A plugin that fails to import, whose hook implementation does not match
its specification, that implements a misspelt hook, or whose registration raises (a
duplicate component name, say) is recorded in :attr:`ErasusPluginManager.failures` and
skipped; the rest keep working.

Environment variables:

- ``ERASUS_PLUGINS``: comma-separated entry-point names to load (empty: none but the
  built-in plugin). Unset: every installed plugin loads.
- ``ERASUS_STRICT_PLUGINS=1``: a plugin failure raises :class:`~erasus.errors.PluginError`.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import pluggy

from erasus import hookspecs
from erasus._version import __version__
from erasus.components import KINDS
from erasus.errors import PluginError
from erasus.registry import Registry

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "ErasusPluginManager",
    "PluginRecord",
    "active_registry",
    "get_plugin_manager",
    "load_registry",
    "using_registry",
]

ENTRY_POINT_GROUP = "erasus"
BUILTIN_PLUGINS = ("erasus.builtin.plugin",)  # registered first, as plugin "builtin"
_HOOK_PREFIX = "erasus_"


@dataclass
class PluginRecord:
    """What the plugin manager knows about one plugin."""

    name: str
    status: str  # "loaded", "failed" or "disabled"
    package: str | None = None
    version: str | None = None
    module: str | None = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    builtin: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "package": self.package,
            "version": self.version,
            "module": self.module,
            "hooks": self.hooks,
            "error": self.error,
            "builtin": self.builtin,
        }


def _strict() -> bool:
    return os.environ.get("ERASUS_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes"}


def _selected() -> set[str] | None:
    raw = os.environ.get("ERASUS_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _format_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


class ErasusPluginManager(pluggy.PluginManager):
    """A pluggy manager that records plugin failures instead of stopping on them."""

    def __init__(self, *, strict: bool | None = None) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.strict = _strict() if strict is None else strict
        self.records: dict[str, PluginRecord] = {}
        self._registry: Registry | None = None

    # -- loading -----------------------------------------------------------------------
    @property
    def failures(self) -> list[PluginRecord]:
        return [r for r in self.records.values() if r.status == "failed"]

    def fail(self, record: PluginRecord, exc: BaseException | str) -> None:
        """Record a plugin failure (and unregister it); raise instead in strict mode."""
        message = exc if isinstance(exc, str) else _format_error(exc)
        record.status = "failed"
        record.error = message
        plugin = self.get_plugin(record.name)
        if plugin is not None:
            self.unregister(plugin)
        self._registry = None
        if self.strict or record.builtin:
            if isinstance(exc, BaseException):
                raise PluginError(f"plugin '{record.name}' failed: {message}") from exc
            raise PluginError(f"plugin '{record.name}' failed: {message}")

    def add_plugin(self, plugin: object, record: PluginRecord) -> bool:
        """Register ``plugin`` under ``record.name``, validating its hooks; False on failure."""
        self.records[record.name] = record
        unmarked = [
            n for n in dir(plugin)
            if n.startswith(_HOOK_PREFIX) and callable(getattr(plugin, n, None))
            and self.parse_hookimpl_opts(plugin, n) is None
        ]
        if unmarked:
            self.fail(record, f"{', '.join(unmarked)} not decorated with @erasus.hookimpl")
            return False
        try:
            self.register(plugin, name=record.name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            self.fail(record, exc)
            return False
        unknown = [hc.name for hc in self.get_hookcallers(plugin) or [] if not hc.has_spec()]
        if unknown:
            known = [n for n in dir(self.hook) if n.startswith(_HOOK_PREFIX)
                     and getattr(self.hook, n).has_spec()]
            from erasus.errors import did_you_mean

            hints = "; ".join(f"unknown hook '{n}'{did_you_mean(n, known)}" for n in unknown)
            self.fail(record, hints)
            return False
        record.hooks = sorted(hc.name for hc in self.get_hookcallers(plugin) or [])
        record.status = "loaded"
        self._registry = None
        return True

    def load_builtins(self) -> None:
        for modname in BUILTIN_PLUGINS:
            record = PluginRecord(name="builtin", status="failed",
                                  package="erasus", version=__version__, module=modname,
                                  builtin=True)
            self.add_plugin(importlib.import_module(modname), record)

    def load_entrypoints(self) -> None:
        selected = _selected()
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            record = PluginRecord(
                name=ep.name,
                status="disabled",
                package=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
                module=ep.value,
            )
            if ep.name in self.records:
                continue
            if selected is not None and ep.name not in selected:
                self.records[ep.name] = record
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not stop the others
                self.records[ep.name] = record
                self.fail(record, f"import failed: {_format_error(exc)}")
                continue
            self.add_plugin(plugin, record)

    # -- the registry --------------------------------------------------------------------
    @property
    def registry(self) -> Registry:
        """The component registry built from every loaded plugin (rebuilt after changes)."""
        if self._registry is None:
            self._registry = self._build_registry()
        return self._registry

    def _build_registry(self) -> Registry:
        while True:
            registry = Registry()
            failed = self._register_all(registry)
            if failed is None:
                return registry
            # A plugin failed half-way: it has been unregistered; rebuild without it.

    def _register_all(self, registry: Registry) -> str | None:
        for kind, hook_name in KINDS.items():
            caller = getattr(self.hook, hook_name)
            for impl in caller.get_hookimpls():
                record = self.records.get(impl.plugin_name) or PluginRecord(
                    name=impl.plugin_name, status="loaded")
                self.records.setdefault(impl.plugin_name, record)

                def register(cls: type, _kind: str = kind, _rec: PluginRecord = record) -> None:
                    registry.add(_kind, cls, plugin=_rec.name, package=_rec.package,
                                 version=_rec.version)

                try:
                    impl.function(**({"register": register} if "register" in impl.argnames
                                     else {}))
                except Exception as exc:
                    detail = _format_error(exc)
                    if os.environ.get("ERASUS_DEBUG"):
                        detail += "\n" + traceback.format_exc()
                    self.fail(record, f"{hook_name} failed: {detail}")
                    return record.name
        return None

    def load_commands(self) -> list[tuple[str, Any, str]]:
        """Typer sub-apps that plugins register, as (name, app, plugin) triples."""
        commands: list[tuple[str, Any, str]] = []
        for impl in self.hook.erasus_register_commands.get_hookimpls():
            def register(app: Any, name: str | None = None, _plugin: str = impl.plugin_name
                         ) -> None:
                commands.append((name or getattr(app.info, "name", None) or _plugin, app,
                                 _plugin))

            try:
                impl.function(register=register)
            except Exception as exc:
                record = self.records.get(impl.plugin_name)
                if record is not None:
                    self.fail(record, f"erasus_register_commands failed: {_format_error(exc)}")
        return commands


def get_plugin_manager(*, entrypoints: bool = True, strict: bool | None = None,
                       plugins: tuple[tuple[str, object], ...] = ()) -> ErasusPluginManager:
    """A fresh plugin manager with the built-in plugin, installed plugins and ``plugins``.

    Args:
        entrypoints: load plugins installed under the ``erasus`` entry-point group.
        strict: make plugin failures fatal (default: ``ERASUS_STRICT_PLUGINS``).
        plugins: extra ``(name, plugin_object)`` pairs to register in-process (tests).
    """
    pm = ErasusPluginManager(strict=strict)
    pm.load_builtins()
    if entrypoints:
        pm.load_entrypoints()
    for name, plugin in plugins:
        pm.add_plugin(plugin, PluginRecord(name=name, status="failed",
                                           module=getattr(plugin, "__name__", None)))
    return pm


def load_registry(pm: ErasusPluginManager | None = None) -> Registry:
    """The registry of ``pm`` (default: a fresh plugin manager with installed plugins)."""
    return (pm or get_plugin_manager()).registry


_ACTIVE: ContextVar[Registry | None] = ContextVar("erasus_active_registry", default=None)
_INSTALLED: list[Registry] = []


def active_registry() -> Registry:
    """The registry components resolve other components in (``voting``'s members, a
    ``lora`` strategy's inner strategy, a loss named in a config).

    Inside :func:`erasus.run`, :func:`erasus.evaluate` and ``Unlearner`` that is the
    registry of the plugin manager they were given; elsewhere the installed plugins'
    registry, built once per process.
    """
    active = _ACTIVE.get()
    if active is not None:
        return active
    if not _INSTALLED:
        _INSTALLED.append(load_registry())
    return _INSTALLED[0]


@contextmanager
def using_registry(registry: Registry) -> Iterator[Registry]:
    """Make ``registry`` the :func:`active_registry` inside the ``with`` block."""
    token = _ACTIVE.set(registry)
    try:
        yield registry
    finally:
        _ACTIVE.reset(token)
