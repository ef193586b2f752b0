"""The docs stay true to the code.

- The generated reference pages (``docs/reference/``) are up to date.
- Meta-tests: every built-in component has an entry in the page of its kind, every hook
  specification has one in the hook reference, every config key one in the configuration
  reference (checked against the code, not against the generator's own discovery).
- Every ``erasus ...`` command shown in a code block of the docs names a real command and
  real options of the CLI.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
GENERATOR = DOCS / "gen_reference.py"
REFERENCE = DOCS / "reference"

pytestmark = pytest.mark.skipif(not GENERATOR.is_file(),
                                reason="the docs/ directory is not in this checkout")


@pytest.fixture(scope="module")
def gen() -> Iterator[ModuleType]:
    """docs/gen_reference.py, imported from its path (docs/ is not a package)."""
    name = "erasus_docs_gen_reference"
    spec = importlib.util.spec_from_file_location(name, GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def _read(path: Path) -> str:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing; run: {_regenerate()}"
    return path.read_text(encoding="utf-8")


def _regenerate() -> str:
    return "python docs/gen_reference.py"


def _has_heading(text: str, name: str) -> bool:
    return re.search(rf"^#+ `{re.escape(name)}`", text, re.MULTILINE) is not None


# -- (a) the generated pages are current ------------------------------------------------
def test_generated_reference_is_up_to_date(gen: ModuleType) -> None:
    stale = gen.check()
    assert not stale, (
        "generated docs are stale:\n" + "\n".join(f"  {s}" for s in stale)
        + f"\nregenerate them with: {_regenerate()} (and commit the result)")


# -- (b) meta-tests: everything registered is documented ---------------------------------
def test_every_builtin_component_has_an_entry_in_its_kind_page(gen: ModuleType) -> None:
    from erasus.plugins import get_plugin_manager

    registry = get_plugin_manager(entrypoints=False, strict=True).registry
    missing = []
    entries = list(registry.entries())
    assert entries, "the built-in plugin registers no component"
    for info in entries:
        page = REFERENCE / "components" / f"{gen.KIND_PAGES[info.kind].slug}.md"
        if not _has_heading(_read(page), info.name):
            missing.append(f"{info.kind} '{info.name}' (no heading in "
                           f"{page.relative_to(ROOT)})")
    assert not missing, ("undocumented built-in components:\n  " + "\n  ".join(missing)
                         + f"\nregenerate the docs with: {_regenerate()}")


def test_every_component_kind_has_a_page_in_the_nav(gen: ModuleType) -> None:
    from erasus.components import KINDS

    nav = _read(ROOT / "mkdocs.yml")
    for kind in KINDS:
        assert kind in gen.KIND_PAGES, f"docs/gen_reference.py has no page for kind '{kind}'"
        page = f"reference/components/{gen.KIND_PAGES[kind].slug}.md"
        assert page in nav, f"mkdocs.yml does not list {page} in its nav"


def test_every_hookspec_is_in_the_hook_reference() -> None:
    from erasus.plugins import ErasusPluginManager

    pm = ErasusPluginManager(strict=True)
    hooks = sorted(n for n in vars(pm.hook) if n.startswith("erasus_"))
    assert hooks, "no hook specifications found"
    text = _read(REFERENCE / "hooks.md")
    missing = [h for h in hooks if not _has_heading(text, h)]
    assert not missing, (f"hooks without an entry in docs/reference/hooks.md: {missing}; "
                         f"regenerate with: {_regenerate()}")


def test_every_config_key_is_in_the_configuration_reference() -> None:
    from erasus.config import RunConfig
    from pydantic import BaseModel

    text = _read(REFERENCE / "configuration.md")
    missing = [k for k in RunConfig.model_fields if not _has_heading(text, k)]
    for key, field in RunConfig.model_fields.items():
        nested = next((a for a in (field.annotation, *getattr(field.annotation, "__args__", ()))
                       if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is not None and nested.__name__ in ("RunSection", "OracleSection"):
            missing += [f"{key}.{sub}" for sub in nested.model_fields
                        if f"`{key}.{sub}`" not in text]
    assert not missing, (f"config keys missing from docs/reference/configuration.md: "
                         f"{missing}; regenerate with: {_regenerate()}")


# -- (c) commands shown in the docs exist -------------------------------------------------
_FENCE = re.compile(r"^(\s*)(```+|~~~+)[^\n]*\n(.*?)^\1\2[ \t]*$", re.MULTILINE | re.DOTALL)
_SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "&"}


def _doc_commands() -> list[tuple[str, str]]:
    """``(file, line)`` for every line of a fenced code block that runs ``erasus`` (a line
    continued with a trailing backslash is joined with the next, as the shell does)."""
    found = []
    for path in sorted(DOCS.rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        for block in _FENCE.finditer(text):
            for line in re.sub(r"\\\n", " ", block.group(3)).splitlines():
                line = line.strip()
                line = line[2:] if line.startswith("$ ") else line
                if line.startswith("erasus ") or line == "erasus":
                    found.append((str(path.relative_to(ROOT)), line))
    return found


def _cli() -> Any:
    pytest.importorskip("erasus.cli.app")
    import typer.main
    from erasus.cli.app import app
    from erasus.plugins import get_plugin_manager

    root = typer.main.get_command(app)
    # the sub-commands installed plugins mount (erasus llm ...), as main() mounts them
    for name, sub, _ in get_plugin_manager().load_commands():
        if name not in root.commands:
            root.add_command(typer.main.get_command(sub), name)
    return root


def _option_names(command: Any) -> set[str]:
    names = {"-h", "--help"}
    for param in command.params:
        names.update(getattr(param, "opts", []))
        names.update(getattr(param, "secondary_opts", []))
    return {n for n in names if n.startswith("-")}


def _check_command_line(root: Any, line: str) -> str | None:
    """A problem with one documented ``erasus ...`` line, or ``None``."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        return f"cannot parse: {exc}"
    for i, token in enumerate(tokens):
        if token in _SHELL_OPERATORS:
            tokens = tokens[:i]
            break
    command, path = root, ["erasus"]
    for token in tokens[1:]:
        if token.startswith("-") and token != "-":
            option = token.split("=", 1)[0]
            if option not in _option_names(command):
                return f"'{' '.join(path)}' has no option '{option}'"
        elif hasattr(command, "commands") and command is not None:
            sub = command.commands.get(token)
            if sub is None:
                names = ", ".join(command.commands)
                return f"'{' '.join(path)}' has no command '{token}' (commands: {names})"
            command, path = sub, [*path, token]
    if hasattr(command, "commands") and command is root and len(tokens) > 1 and not any(
            t in ("--version", "--help", "-h") for t in tokens[1:]):
        return "names no command"
    return None


def test_documented_commands_exist() -> None:
    root = _cli()
    lines = _doc_commands()
    assert lines, "no `erasus ...` command found in the docs' code blocks"
    problems = [f"{path}: `{line}`: {problem}" for path, line in lines
                if (problem := _check_command_line(root, line)) is not None]
    assert not problems, "docs show commands the CLI does not have:\n  " + "\n  ".join(
        problems)


def test_the_command_checker_catches_mistakes() -> None:
    root = _cli()
    assert _check_command_line(root, "erasus run configs/quickstart.yaml --set a=1") is None
    assert _check_command_line(root, "erasus --version") is None
    assert _check_command_line(root, "erasus list-plugins --json | jq .") is None
    assert "no command 'runn'" in (_check_command_line(root, "erasus runn x.yaml") or "")
    assert "no option '--sett'" in (_check_command_line(root, "erasus run x.yaml --sett a=1")
                                    or "")
