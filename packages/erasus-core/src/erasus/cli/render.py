"""Rich rendering of metrics, plugins and component descriptions for the CLI."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from erasus.evaluation import ROLES

__all__ = ["format_value", "metrics_table", "run_summary_lines"]

_LABELS = {"MIA_efficacy": "MIA-efficacy", "mia_auc": "MIA AUC"}


def format_value(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"
    return str(value)


def metrics_table(metrics: dict[str, Any], title: str | None = None) -> Table:
    """Rows: the evaluated models; columns: every per-model value."""
    roles = [r for r in ROLES if r in metrics]
    names: list[str] = []
    for role in roles:
        for name in metrics[role]:
            if name not in names:
                names.append(name)
    table = Table(title=title, title_justify="left")
    table.add_column("model", style="bold")
    for name in names:
        table.add_column(_LABELS.get(name, name), justify="right")
    for role in roles:
        table.add_row(role, *(format_value(metrics[role].get(name, float("nan")))
                              for name in names))
    return table


def run_summary_lines(metrics: dict[str, Any]) -> list[str]:
    """Run-level values (Avg. Gap, time and its ratio to retraining, memory) as lines."""
    values = metrics.get("run", {})
    lines = []
    if "avg_gap" in values:
        lines.append(f"Avg. Gap to the oracle: {format_value(values['avg_gap'])}")
    if "unlearn_seconds" in values:
        line = f"Unlearning time: {values['unlearn_seconds']:.2f} s"
        if "rte_ratio" in values and "oracle_seconds" in values:
            line += (f" = {values['rte_ratio']:.3f} x retraining "
                     f"({values['oracle_seconds']:.2f} s)")
        lines.append(line)
    if "peak_host_mb" in values:
        lines.append(f"Peak memory: host {values['peak_host_mb']:.0f} MiB, device "
                     f"{values.get('peak_device_mb', 0.0):.0f} MiB")
    shown = {"avg_gap", "unlearn_seconds", "rte_ratio", "oracle_seconds", "peak_host_mb",
             "peak_device_mb"}
    for name, value in values.items():
        if name not in shown:
            lines.append(f"{name}: {format_value(value)}")
    return lines
