"""A Markdown report of a run: one table of every model's metric values."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from erasus.reporting import Reporter, ReporterParams, RunSummary

__all__ = ["MarkdownReporter", "format_metrics_table", "format_value"]

_ROLES = ("original", "unlearned", "oracle")
_RUN = "run"
#: Entries of summary["metrics"] that are not a model's values.
_NOT_MODELS = ("run", "details", "run_info")


def format_value(value: Any, decimals: int | None = None) -> str:
    """A compact rendering of one value: ``decimals`` places, or 4 below 1 and 2 above."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if decimals is None:
            if value == 0:
                return "0"
            decimals = 4 if abs(value) < 1 else 2
        return f"{value:.{decimals}f}"
    return str(value)


def _column_decimals(values: list[Any]) -> int:
    """One precision per column, so its numbers line up: 4 places if all are below 1."""
    numbers = [abs(v) for v in values if _is_number(v) and math.isfinite(v)]
    return 4 if numbers and max(numbers) < 1 else 2


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _model_rows(metrics: dict[str, Any]) -> list[str]:
    """Roles in report order, then any other entry that is a mapping of numbers."""
    others = sorted(k for k, v in metrics.items()
                    if k not in _ROLES and k not in _NOT_MODELS and isinstance(v, dict)
                    and v and all(_is_number(x) for x in v.values()))
    return [r for r in _ROLES if isinstance(metrics.get(r), dict)] + others


def format_metrics_table(metrics: dict[str, Any]) -> str:
    """Markdown for ``{role: {name: value}}``: models as rows, then the run-level values.

    Roles ``original``, ``unlearned`` and ``oracle`` come first in that order (then any
    other entry holding only numbers); columns are every per-model value name in order of
    first appearance, with ``-`` where a model lacks one. The ``run`` entry becomes a
    two-column table. ``details`` and ``run_info`` (what the pipeline adds beside the
    values) are not part of this table.
    """
    roles = _model_rows(metrics)
    columns: list[str] = []
    for role in roles:
        for key in metrics[role]:
            if key not in columns:
                columns.append(key)
    parts = []
    if roles and columns:
        places = {c: _column_decimals([metrics[r][c] for r in roles if c in metrics[r]])
                  for c in columns}
        rows = [[role] + [format_value(metrics[role][c], places[c]) if c in metrics[role]
                          else "-" for c in columns] for role in roles]
        parts.append(_table(["model", *columns], rows))
    run_values = metrics.get(_RUN) or {}
    if run_values:
        parts.append(_table(["run metric", "value"],
                            [[k, format_value(v)] for k, v in run_values.items()]))
    return "\n\n".join(parts)


class MarkdownReporter(Reporter):
    """Write ``report.md``: what ran, the metric table, run-level values and run facts.

    The table has one row per evaluated model (original, unlearned, oracle) and one column
    per per-model value in ``summary["metrics"]``; the run-level values
    (``metrics["run"]``: Avg. Gap, time...) follow as a two-column table, then the run's
    recorded facts (``metrics["run_info"]``: timings, memory, device). Metric details
    (curves...) stay in ``metrics.json``.
    """

    name = "markdown"
    modalities = ("any",)
    needs = frozenset()
    Params = ReporterParams
    paper = None

    def report(self, run_dir: Path, summary: RunSummary) -> list[Path]:
        run_dir = Path(run_dir)
        config = summary.get("config") or {}
        metrics = summary.get("metrics") or {}
        lines = ["# Erasus run report", ""]
        described = []
        for key in ("model", "data", "selector", "strategy"):
            section = config.get(key)
            name = section.get("name") if isinstance(section, dict) else section
            if name:
                described.append(f"- {key}: `{name}`")
        if "seed" in config:
            described.append(f"- seed: {config['seed']}")
        if described:
            lines += [*described, ""]
        lines += ["## Metrics", ""]
        table = format_metrics_table(metrics)
        lines += [table or "_no metrics were computed_", ""]
        facts = {k: v for k, v in (metrics.get("run_info") or {}).items()
                 if _is_number(v) or isinstance(v, str)}
        if facts:
            lines += ["## Run information", "",
                      _table(["fact", "value"], [[k, format_value(v)] for k, v in facts.items()]),
                      ""]
        path = run_dir / "report.md"
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines))
        return [path]
