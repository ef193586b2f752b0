"""The ``dashboard`` reporter: an interactive Plotly page comparing several runs."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erasus.builtin.reporters.markdown import format_value
from erasus.reporting import Reporter, ReporterParams, RunSummary

from erasus_viz._common import run_facts, write_text

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["Dashboard", "curves_figure", "metrics_figure", "run_names"]

#: Run-level values shown in the table beside the unlearned model's metrics.
_RUN_KEYS = ("avg_gap", "unlearn_seconds")
_PALETTE = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692",
            "#b6e880", "#ff97ff", "#fecb52")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0 auto;max-width:1200px;padding:1.5rem 2rem;color:#1b1b1b}
table{border-collapse:collapse;margin:.6rem 0}th,td{border:1px solid #d0d0d0;
padding:.25rem .6rem}th{background:#f3f4f8;text-align:left}td.num{text-align:right;
font-variant-numeric:tabular-nums}h2{margin-top:2rem}
"""


def run_names(run_dirs: list[Path]) -> list[str]:
    """Each run's directory name; with the parent's name too where two names collide."""
    names = [Path(d).name for d in run_dirs]
    return [f"{Path(d).parent.name}/{n}" if names.count(n) > 1 else n
            for d, n in zip(run_dirs, names, strict=True)]


def _metric_names(summaries: list[RunSummary]) -> list[str]:
    names: list[str] = []
    for summary in summaries:
        values = (summary.get("metrics") or {}).get("unlearned") or {}
        names += [k for k, v in values.items() if k not in names and _is_number(v)]
    return names


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _value(summary: RunSummary, role: str, metric: str) -> float | None:
    value = ((summary.get("metrics") or {}).get(role) or {}).get(metric)
    return float(value) if _is_number(value) else None


def metrics_figure(names: list[str], summaries: list[RunSummary]) -> go.Figure:
    """One panel per metric: a bar per run (its unlearned model's value, one trace per run
    across the panels) with the original's (diamond) and the oracle's (cross) values as
    markers."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = _metric_names(summaries)
    cols = min(3, max(1, len(metrics)))
    rows = max(1, -(-len(metrics) // cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=metrics or ["no metrics"])
    for i, (name, summary) in enumerate(zip(names, summaries, strict=True)):
        colour = _PALETTE[i % len(_PALETTE)]
        for k, metric in enumerate(metrics):
            fig.add_trace(go.Bar(x=[name], y=[_value(summary, "unlearned", metric)],
                                 name=name, legendgroup=name, marker_color=colour,
                                 showlegend=k == 0,
                                 hovertemplate=f"{escape(name)}<br>{escape(metric)} "
                                 "(unlearned): %{y}<extra></extra>"),
                          row=k // cols + 1, col=k % cols + 1)
    for role, symbol in (("original", "diamond"), ("oracle", "x")):
        for k, metric in enumerate(metrics):
            values = [_value(s, role, metric) for s in summaries]
            if all(v is None for v in values):
                continue
            fig.add_trace(go.Scatter(x=names, y=values, mode="markers", name=role,
                                     legendgroup=role, showlegend=k == 0,
                                     marker={"symbol": symbol, "size": 11,
                                             "color": "#222222" if role == "original"
                                             else "#2ca02c",
                                             "line": {"width": 1, "color": "white"}}),
                          row=k // cols + 1, col=k % cols + 1)
    fig.update_layout(height=320 * rows + 60, barmode="group",
                      title="Metrics per run (bars: unlearned; markers: original and oracle)",
                      margin={"t": 130},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.06, "x": 0})
    return fig


def curves_figure(names: list[str], summaries: list[RunSummary]) -> go.Figure:
    """The runs' forget and retain losses per unlearning step, overlaid (one trace per run
    in each panel; runs without steps are left out)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    sets = ("forget_loss", "retain_loss")
    fig = make_subplots(rows=1, cols=2, subplot_titles=["forget loss", "retain loss"])
    for i, (name, summary) in enumerate(zip(names, summaries, strict=True)):
        steps = (summary.get("history") or {}).get("steps") or []
        colour = _PALETTE[i % len(_PALETTE)]
        shown = False
        for col, key in enumerate(sets, start=1):
            if not any(key in r for r in steps):
                continue
            fig.add_trace(go.Scatter(x=[r.get("step", j + 1) for j, r in enumerate(steps)],
                                     y=[r.get(key) for r in steps], mode="lines", name=name,
                                     legendgroup=name, showlegend=not shown,
                                     line={"color": colour}, meta=key),
                          row=1, col=col)
            shown = True
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="loss", col=1)
    fig.update_layout(height=420, title="Unlearning losses per step")
    return fig


def _table(names: list[str], summaries: list[RunSummary]) -> str:
    metrics = _metric_names(summaries)
    run_keys = [k for k in _RUN_KEYS
                if any(k in ((s.get("metrics") or {}).get("run") or {}) for s in summaries)]
    header = ["run", "strategy", "selector", "seed", *metrics, *run_keys]
    rows = []
    for name, summary in zip(names, summaries, strict=True):
        facts = run_facts(summary)
        cells = [name, str(facts["strategy"]), str(facts["selector"]), str(facts["seed"])]
        text = "".join(f"<td>{escape(c)}</td>" for c in cells)
        values = [_value(summary, "unlearned", m) for m in metrics]
        values += [((summary.get("metrics") or {}).get("run") or {}).get(k) for k in run_keys]
        for value in values:
            shown = "-" if value is None else escape(format_value(value))
            text += f'<td class="num">{shown}</td>'
        rows.append(f'<tr data-run="{escape(name)}">{text}</tr>')
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    return (f'<table id="runs-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}'
            "</tbody></table>")


def render(run_dirs: list[Path], summaries: list[RunSummary]) -> str:
    """The whole ``dashboard.html`` (plotly.js inlined: it works offline)."""
    import plotly.io as pio

    names = run_names(run_dirs)
    figures = [("metrics", metrics_figure(names, summaries)),
               ("curves", curves_figure(names, summaries))]
    divs = []
    for i, (div_id, fig) in enumerate(figures):
        divs.append(pio.to_html(fig, full_html=False, include_plotlyjs=i == 0,
                                div_id=f"plot-{div_id}", config={"responsive": True}))
    title = f"Erasus: {len(names)} runs compared"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>\n"
            f"<h1>{escape(title)}</h1>\n<h2>Runs</h2>\n{_table(names, summaries)}\n"
            f'<h2>Metrics</h2>\n{divs[0]}\n<h2>Losses</h2>\n{divs[1]}\n</body></html>\n')


class Dashboard(Reporter):
    """Write ``dashboard.html`` comparing several runs (``erasus report RUN_DIR RUN_DIR...``).

    An interactive Plotly page, plotly.js inlined so it opens offline: a table of the runs
    (directory name, strategy, selector, seed, the unlearned model's metrics, Avg. Gap and
    unlearning time); one bar chart per metric with a bar per run (its unlearned model)
    and the original's and the oracle's values as markers; and the runs' forget and retain
    losses per step overlaid. It writes nothing for a single run.
    """

    name = "dashboard"
    modalities = ("any",)
    needs = frozenset()
    Params = ReporterParams
    paper = None

    def report(self, run_dir: Path, summary: RunSummary) -> list[Path]:
        return []

    def compare(self, run_dirs: list[Path], summaries: list[RunSummary], out_dir: Path
                ) -> list[Path]:
        path = Path(out_dir) / "dashboard.html"
        return [write_text(path, render([Path(d) for d in run_dirs], summaries))]
