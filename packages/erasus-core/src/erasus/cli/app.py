"""The ``erasus`` Typer app: list-plugins, run, evaluate, report, describe, new-plugin.

Errors the user can fix print as one line per problem and exit with code 1; usage errors
exit with 2; tracebacks appear only with ``--debug`` or ``ERASUS_DEBUG=1``.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from erasus._version import __version__

__all__ = ["app", "main"]

F = TypeVar("F", bound=Callable[..., Any])

out = Console()
err = Console(stderr=True)

app = typer.Typer(
    name="erasus",
    help="Erasus: machine unlearning. Run a config, inspect plugins and components.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _debug() -> bool:
    return os.environ.get("ERASUS_DEBUG", "").strip().lower() in {"1", "true", "yes"}


def _fail(message: str) -> typer.Exit:
    from rich.markup import escape

    for i, line in enumerate(str(message).splitlines() or [""]):
        # the message is plain text: brackets in it (a path, a gloo source location) are
        # not markup
        err.print(("[bold red]error:[/] " + escape(line)) if i == 0 else line,
                  markup=i == 0, highlight=False, soft_wrap=True)
    return typer.Exit(1)


# click's usage-error base class, from the click that typer uses (exit code 2)
_USAGE_ERRORS = tuple(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def handle_errors(fn: F) -> F:
    """Turn exceptions into one-line messages and exit code 1 (re-raise with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from erasus.errors import ErasusError

        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, *_USAGE_ERRORS):
            raise
        except ErasusError as exc:
            if _debug():
                raise
            raise _fail(str(exc)) from None
        except Exception as exc:  # the CLI boundary: show one line, traceback with --debug
            if _debug():
                raise
            raise _fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)"
                        ) from None

    return wrapper  # type: ignore[return-value]


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"erasus {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool | None, typer.Option(
        "--version", callback=_version_callback, is_eager=True,
        help="Show the version and exit.")] = None,
    debug: Annotated[bool, typer.Option(
        "--debug", help="Show full tracebacks on errors (or set ERASUS_DEBUG=1).")] = False,
) -> None:
    """Erasus: machine unlearning. Run a config, inspect plugins and components."""
    if debug:
        os.environ["ERASUS_DEBUG"] = "1"


def _plugin_manager() -> Any:
    from erasus.plugins import get_plugin_manager

    return get_plugin_manager()


# -- list-plugins -------------------------------------------------------------------------
@app.command("list-plugins")
@handle_errors
def list_plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")
                       ] = False,
    show_all: Annotated[bool, typer.Option(
        "--all", help="Also list installed plugins that ERASUS_PLUGINS left out.")] = False,
) -> None:
    """List plugins: package, version, components by kind, and failed plugins with errors."""
    pm = _plugin_manager()
    registry = pm.registry
    records = sorted((r for r in pm.records.values() if show_all or r.status != "disabled"),
                     key=lambda r: (not r.builtin, r.name))
    if as_json:
        data = [{**r.to_dict(), "components": registry.by_plugin(r.name)} for r in records]
        out.print_json(json.dumps(data))
        return
    table = Table(title="Erasus plugins", title_justify="left")
    for col in ("plugin", "package", "version", "status", "components"):
        table.add_column(col)
    for r in records:
        comps = registry.by_plugin(r.name)
        text = "\n".join(f"{kind}: {', '.join(names)}" for kind, names in comps.items())
        status = {"loaded": "[green]loaded[/]", "failed": "[red]failed[/]",
                  "disabled": "[dim]disabled[/]"}[r.status]
        table.add_row(r.name + (" (built-in)" if r.builtin else ""), r.package or "",
                      r.version or "", status, text or "[dim]no components yet[/]")
    out.print(table)
    for r in pm.failures:
        err.print(f"[bold red]plugin '{r.name}' failed:[/] {r.error}", highlight=False)


# -- run / evaluate -------------------------------------------------------------------------
def _print_metrics(metrics: dict[str, Any], title: str) -> None:
    from erasus.cli.render import metrics_table, run_summary_lines

    out.print(metrics_table(metrics, title=title))
    for line in run_summary_lines(metrics):
        out.print(line, highlight=False)


SetOption = Annotated[list[str] | None, typer.Option(
    "--set", "-s", metavar="KEY=VALUE",
    help="Override a config value, e.g. --set strategy.lr=0.01 (repeatable).")]


@app.command("run")
@handle_errors
def run_command(
    config: Annotated[Path, typer.Argument(help="Run config (YAML).")],
    set_: SetOption = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Run directory to write (default: run.output_dir/<name>).")
    ] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the interrupted run of this config from its checkpoint.")
    ] = False,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="Show progress bars (default: on a terminal).")
    ] = None,
) -> None:
    """Run a config: select, unlearn, evaluate, and write the run directory."""
    from erasus import distributed
    from erasus.pipeline import run

    result = run(config, overrides=set_ or [], output=output, resume=resume,
                 progress=progress)
    if not distributed.is_main():  # under torchrun, rank 0 reports
        return
    cfg = result.config
    _print_metrics(result.metrics, title=f"{cfg['strategy']['name']} on {cfg['data']['name']}"
                   f" (selector {cfg['selector']['name']}, seed {cfg['seed']})")
    out.print(f"run directory: {result.run_dir}", highlight=False, soft_wrap=True)


@app.command("evaluate")
@handle_errors
def evaluate_command(
    source: Annotated[Path, typer.Argument(help="A run directory, or a run config (YAML).")],
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")
                       ] = False,
) -> None:
    """Evaluate a run directory's models again, or a config's original and oracle."""
    from erasus import distributed
    from erasus.pipeline import evaluate

    metrics = evaluate(source, overrides=set_ or [])
    if not distributed.is_main():  # under torchrun, rank 0 reports
        return
    if as_json:
        out.print_json(json.dumps(metrics, default=float))
        return
    _print_metrics(metrics, title=f"evaluation of {source}")


@app.command("report")
@handle_errors
def report_command(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Finished run directories (one or more).")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where the comparison of several runs goes (default: "
        "./erasus-comparison).")] = None,
    reporter: Annotated[list[str] | None, typer.Option(
        "--reporter", "-r", help="Only this reporter (repeatable; default: each run's "
        "reporters).")] = None,
) -> None:
    """(Re)build the reports of saved runs, and a comparison of several; nothing re-runs."""
    from erasus.reporting import build_reports

    written = build_reports(run_dirs, output=output or Path("erasus-comparison"),
                            only=reporter or None)
    for path in written:
        out.print(f"wrote {path}", highlight=False, soft_wrap=True)


# -- describe -----------------------------------------------------------------------------
@app.command("describe")
@handle_errors
def describe(
    name: Annotated[str, typer.Argument(help="Registered component name.")],
    kind: Annotated[str | None, typer.Option(
        "--kind", "-k", help="Component kind, when the name is used by several kinds.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Describe a component: kind, provider, parameters with defaults and docs, citation."""
    from erasus.components import KINDS
    from erasus.errors import ComponentNotFoundError, did_you_mean

    registry = _plugin_manager().registry
    if kind is not None and kind not in KINDS:
        raise typer.BadParameter(f"unknown kind '{kind}'{did_you_mean(kind, KINDS)}; "
                                 f"kinds: {', '.join(KINDS)}", param_hint="--kind")
    matches = [registry.get(kind, name)] if kind else registry.find(name)
    if not matches:
        every = [info.name for info in registry.entries()]
        raise ComponentNotFoundError(f"no component named '{name}'{did_you_mean(name, every)}"
                                     "; see `erasus list-plugins`")
    if len(matches) > 1:
        kinds = ", ".join(m.kind for m in matches)
        raise ComponentNotFoundError(f"'{name}' names several components ({kinds}); "
                                     "choose one with --kind")
    info = matches[0]
    data = info.to_dict()
    if as_json:
        out.print_json(json.dumps(data, default=str))
        return
    provider = f"{info.plugin}" + (f" ({info.package} {info.version})" if info.package else "")
    out.print(f"[bold]{info.name}[/] — {info.kind}", highlight=False)
    out.print(info.doc, highlight=False, markup=False)
    out.print()
    out.print(f"[bold]provider:[/]   {provider}", highlight=False)
    out.print(f"[bold]modalities:[/] {', '.join(data['modalities'])}", highlight=False)
    out.print(f"[bold]needs:[/]      {', '.join(data['needs']) or 'nothing extra'}",
              highlight=False)
    out.print(f"[bold]paper:[/]      {data['paper'] or 'none (implements no paper)'}",
              highlight=False)
    table = Table(title="parameters", title_justify="left")
    for col in ("name", "type", "default", "description"):
        table.add_column(col)
    for p in data["params"]:
        default = "(required)" if p["required"] else json.dumps(p["default"], default=str)
        table.add_row(p["name"], p["type"], default, p["doc"])
    out.print(table)


# -- new-plugin ---------------------------------------------------------------------------
@app.command("new-plugin")
@handle_errors
def new_plugin(
    name: Annotated[str, typer.Argument(help="Plugin name, e.g. 'my-selectors'.")],
    directory: Annotated[Path | None, typer.Option(
        "--directory", "-d", help="Where to create the package (default: ./<distribution>).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty directory.")
                     ] = False,
) -> None:
    """Scaffold a third-party plugin package that installs and shows in list-plugins."""
    from erasus.scaffold import create_plugin

    path = create_plugin(name, directory, force=force)
    out.print(f"created plugin package in {path}", highlight=False, soft_wrap=True)
    out.print(f"install it with: pip install -e {path}", highlight=False, soft_wrap=True)


def _mount_plugin_commands() -> None:
    try:
        pm = _plugin_manager()
    except Exception as exc:  # plugin loading is reported by list-plugins; keep the CLI up
        if _debug():
            raise
        err.print(f"[yellow]warning:[/] plugins could not be loaded: {exc}", highlight=False)
        return
    builtin = {c.name for c in app.registered_commands if c.name}
    for name, sub, plugin in pm.load_commands():
        if name in builtin:
            err.print(f"[yellow]warning:[/] plugin '{plugin}' registers command '{name}', "
                      "which is a built-in command; ignored", highlight=False)
            continue
        app.add_typer(sub, name=name)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI (plugins' sub-commands are mounted first)."""
    _mount_plugin_commands()
    app(args=argv if argv is not None else sys.argv[1:], prog_name="erasus")
