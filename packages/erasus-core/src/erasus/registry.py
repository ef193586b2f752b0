"""The component registry: every component kind, by name, with the plugin that provides it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from erasus.components import KINDS, ComponentInfo
from erasus.errors import (
    ComponentNotFoundError,
    DuplicateComponentError,
    PluginError,
    did_you_mean,
)

__all__ = ["Registry"]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class Registry:
    """Components by kind and name. Built by :func:`erasus.plugins.load_registry`."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, ComponentInfo]] = {kind: {} for kind in KINDS}

    def add(
        self,
        kind: str,
        cls: type,
        *,
        plugin: str,
        package: str | None = None,
        version: str | None = None,
    ) -> ComponentInfo:
        """Add one component class; raise if its metadata is incomplete or its name is taken."""
        if kind not in KINDS:
            raise PluginError(f"plugin '{plugin}': unknown component kind '{kind}'")
        if not isinstance(cls, type):
            raise PluginError(
                f"plugin '{plugin}' registered {cls!r} as a {kind}; register the class itself"
            )
        name = cls.__dict__.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise PluginError(
                f"plugin '{plugin}': {kind} class {cls.__qualname__} needs a class attribute "
                f"'name' in snake_case (got {name!r})"
            )
        existing = self._entries[kind].get(name)
        if existing is not None:
            raise DuplicateComponentError(
                f"{kind} '{name}' is registered twice: by plugin '{existing.plugin}' "
                f"({existing.cls.__module__}.{existing.cls.__qualname__}) and by plugin "
                f"'{plugin}' ({cls.__module__}.{cls.__qualname__}); uninstall one of them or "
                "disable one with ERASUS_PLUGINS"
            )
        cls.kind = kind
        info = ComponentInfo(kind=kind, name=name, cls=cls, plugin=plugin, package=package,
                             version=version)
        self._entries[kind][name] = info
        return info

    def get(self, kind: str, name: str) -> ComponentInfo:
        """The entry for ``name`` of ``kind``; a clear error with a suggestion if absent."""
        entries = self._entries[kind]
        if name in entries:
            return entries[name]
        names = sorted(entries)
        hint = did_you_mean(name, names)
        available = ", ".join(names) if names else "none"
        plural = "strategies" if kind == "strategy" else f"{kind}s"
        raise ComponentNotFoundError(
            f"no {kind} named '{name}'{hint}; installed {plural}: {available}"
        )

    def find(self, name: str) -> list[ComponentInfo]:
        """Every entry named ``name``, of any kind."""
        return [e[name] for e in self._entries.values() if name in e]

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str | None = None) -> Iterator[ComponentInfo]:
        kinds = [kind] if kind else list(KINDS)
        for k in kinds:
            for name in sorted(self._entries[k]):
                yield self._entries[k][name]

    def by_plugin(self, plugin: str) -> dict[str, list[str]]:
        """Component names provided by ``plugin``, by kind (kinds with none left out)."""
        out: dict[str, list[str]] = {}
        for info in self.entries():
            if info.plugin == plugin:
                out.setdefault(info.kind, []).append(info.name)
        return out

    def create(self, kind: str, name: str, **params: Any) -> Any:
        """Instantiate a component with validated parameters."""
        info = self.get(kind, name)
        return info.cls(info.params_model(**params))
