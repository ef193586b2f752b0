"""Scaffold a third-party plugin package: what ``erasus new-plugin NAME`` writes.

The package has the shape of ``examples/erasus-sample-plugin``: a ``pyproject.toml``
whose entry point under the ``erasus`` group names the plugin module, a ``src/`` package
whose ``plugin.py`` registers one working example selector through a hook, tests that
reuse :mod:`erasus.testing`, and a README. The files come from the templates in
``erasus/cli/templates/plugin/`` (``$name`` placeholders, :class:`string.Template`).

Names: ``my-selectors`` (or ``my_selectors``, ``erasus-my-selectors``) gives the
distribution ``erasus-my-selectors``, the import package ``erasus_my_selectors``, the
entry point ``my_selectors`` and the example selector ``my_selectors_highest_loss``.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from erasus._version import __version__
from erasus.errors import ErasusError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["PluginNames", "create_plugin", "plugin_names"]

_PREFIX = "erasus-"
# Letters, digits and single separators (-, _ or .), starting with a letter.
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*$")
# Entry-point names the core or a first-party package already uses: a plugin installed
# under one of them would be skipped (the core loads one plugin per name).
_RESERVED_ENTRY_POINTS = frozenset({"builtin", "core", "llm", "vlm", "diffusion",
                                    "audio_video", "viz"})
_TEMPLATE_SUFFIX = ".tmpl"
_IMPORT_DIR = "__import_name__"


@dataclass(frozen=True)
class PluginNames:
    """The names a scaffolded plugin package uses, all derived from one user-given name."""

    distribution: str
    import_name: str
    entry_point: str
    selector: str

    def substitutions(self) -> dict[str, str]:
        return {
            "dist_name": self.distribution,
            "import_name": self.import_name,
            "entry_point": self.entry_point,
            "selector_name": self.selector,
            "erasus_version": __version__,
        }


def plugin_names(name: str) -> PluginNames:
    """Derive and validate the package names for plugin ``name``.

    Raises:
        ErasusError: ``name`` is not a valid package name, or is taken by Erasus itself.
    """
    raw = name.strip()
    if not _NAME_RE.match(raw):
        raise ErasusError(
            f"invalid plugin name {name!r}: use letters, digits and single '-', '_' or '.' "
            "separators, starting with a letter (for example 'my-selectors')")
    normalized = re.sub(r"[-_.]+", "-", raw).lower()
    if normalized == "erasus":
        raise ErasusError("invalid plugin name 'erasus': that is the core package; name the "
                          "plugin after what it adds (for example 'my-selectors')")
    distribution = normalized if normalized.startswith(_PREFIX) else _PREFIX + normalized
    slug = distribution[len(_PREFIX):]
    entry_point = slug.replace("-", "_")
    if entry_point in _RESERVED_ENTRY_POINTS:
        raise ErasusError(
            f"invalid plugin name {name!r}: '{distribution}' / entry point '{entry_point}' "
            "belongs to Erasus itself; choose another name (for example "
            f"'{slug}-extras')")
    return PluginNames(
        distribution=distribution,
        import_name=distribution.replace("-", "_"),
        entry_point=entry_point,
        selector=f"{entry_point}_highest_loss",
    )


def _template_root() -> Traversable:
    return files("erasus").joinpath("cli", "templates", "plugin")


def _walk(node: Traversable, prefix: tuple[str, ...] = ()
          ) -> list[tuple[tuple[str, ...], Traversable]]:
    out: list[tuple[tuple[str, ...], Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            out.extend(_walk(child, (*prefix, child.name)))
        elif child.name.endswith(_TEMPLATE_SUFFIX):
            out.append(((*prefix, child.name), child))
    return out


def _render_files(names: PluginNames) -> dict[Path, str]:
    """Relative output path -> rendered text, for every template file."""
    root = _template_root()
    templates = _walk(root)
    if not templates:
        raise ErasusError(f"the plugin templates are missing from the installation ({root}); "
                          "reinstall erasus")
    values = names.substitutions()
    rendered: dict[Path, str] = {}
    for parts, node in templates:
        out_parts = [names.import_name if p == _IMPORT_DIR else p for p in parts]
        out_parts[-1] = out_parts[-1][: -len(_TEMPLATE_SUFFIX)]
        text = string.Template(node.read_text(encoding="utf-8")).substitute(values)
        rendered[Path(*out_parts)] = text
    return rendered


def create_plugin(name: str, directory: str | Path | None = None, *, force: bool = False
                  ) -> Path:
    """Write a new plugin package for ``name`` into ``directory``; return its path.

    Args:
        name: the plugin's name; the distribution is ``erasus-<name>`` unless ``name``
            already starts with ``erasus-``.
        directory: the package directory to create (default: ``./<distribution>``).
        force: write into a directory that is not empty (files of the same name are
            overwritten; other files are kept).

    Raises:
        ErasusError: a bad name, or ``directory`` exists and is a file or, without
            ``force``, a non-empty directory.
    """
    names = plugin_names(name)
    target = Path(directory) if directory is not None else Path.cwd() / names.distribution
    if target.exists() and not target.is_dir():
        raise ErasusError(f"cannot create plugin package in '{target}': it is a file")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ErasusError(f"directory '{target}' exists and is not empty; choose another "
                          "directory or pass --force (force=True in Python) to write into it")
    rendered = _render_files(names)
    for rel, text in rendered.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
