"""Project exception types.

Every error a user can cause (a bad config, a missing plugin, a method that cannot run on
the given model) is an :class:`ErasusError`: its message says what was wrong and how to fix
it, and the CLI prints it on one line per problem without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

__all__ = [
    "ComponentNotFoundError",
    "ConfigError",
    "ConfigProblem",
    "DivergenceError",
    "DuplicateComponentError",
    "ErasusError",
    "IncompatibleComponentError",
    "MissingDependencyError",
    "PluginError",
    "RunDirectoryError",
    "did_you_mean",
]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` if none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class ErasusError(Exception):
    """Base class of every error Erasus raises for a problem the user can fix."""


class ConfigProblem:
    """One problem in a configuration: the dotted key path and what is wrong there."""

    __slots__ = ("message", "path")

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def __repr__(self) -> str:
        return f"ConfigProblem({self.path!r}, {self.message!r})"


class ConfigError(ErasusError):
    """A configuration is invalid; carries one :class:`ConfigProblem` per offending key."""

    def __init__(self, problems: Sequence[ConfigProblem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid configuration{where}:\n{lines}")


class PluginError(ErasusError):
    """A plugin failed to load or register (raised only in strict mode)."""


class ComponentNotFoundError(ErasusError):
    """A config or API call named a component that no loaded plugin registers."""


class DuplicateComponentError(ErasusError):
    """Two plugins registered the same component name for the same kind."""


class IncompatibleComponentError(ErasusError):
    """A component cannot run on the given model or data; the message says what would work."""


class MissingDependencyError(ErasusError):
    """An optional dependency is missing; the message names the extra to install."""


class DivergenceError(ErasusError):
    """Training produced a non-finite or exploding loss; the last good checkpoint was kept."""

    def __init__(self, message: str, *, step: int, last_good_step: int | None) -> None:
        super().__init__(message)
        self.step = step
        self.last_good_step = last_good_step


class RunDirectoryError(ErasusError):
    """The run directory cannot be created, resumed or read."""
