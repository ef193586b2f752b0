"""The ``html_report`` reporter: one self-contained ``report.html`` per run."""

from __future__ import annotations

import base64
import platform
from html import escape
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from erasus.builtin.reporters.markdown import format_value
from erasus.reporting import Reporter, ReporterParams, RunSummary

from erasus_viz._base import PlotReporter
from erasus_viz._common import MODEL_ROLES, PLOTS_DIR, run_facts, run_name, write_text

__all__ = ["HTMLReport", "metrics_tables", "plot_reporters", "render"]

#: The run facts shown as timing (seconds), in this order, then any other ``*_seconds``.
_TIMING = ("selection_seconds", "unlearn_seconds", "original_seconds", "oracle_seconds")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0 auto;max-width:1100px;padding:1.5rem 2rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd;
padding-bottom:.2rem}h3{margin-bottom:.3rem}.subtitle{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.6rem 0}th,td{border:1px solid #d0d0d0;
padding:.25rem .6rem}th{background:#f3f4f8;text-align:left}td.num{text-align:right;
font-variant-numeric:tabular-nums}figure{margin:1.2rem 0}figure img{max-width:100%;
height:auto;border:1px solid #eee}figcaption,.caption{color:#444}.cite{color:#666;
font-size:.85rem}.skipped{background:#fff8e1;border-left:4px solid #f0b400;
padding:.4rem .8rem;margin:.4rem 0}.errors{background:#fdecea;border-left:4px solid
#d93025;padding:.4rem .8rem}pre{background:#f6f8fa;padding:.8rem;overflow:auto;
font-size:.85rem}
"""


def plot_reporters() -> list[type[PlotReporter]]:
    """The erasus-viz reporters whose PNGs ``report.html`` shows, in page order."""
    from erasus_viz.embeddings import Embeddings
    from erasus_viz.gradient_flow import GradientFlow
    from erasus_viz.loss_curves import LossCurves
    from erasus_viz.loss_landscape import LossLandscape
    from erasus_viz.mia_plots import MIAPlots

    return [LossCurves, MIAPlots, Embeddings, LossLandscape, GradientFlow]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num_cell(value: Any) -> str:
    if not _is_number(value):
        return "<td>-</td>" if value is None else f"<td>{escape(str(value))}</td>"
    return f'<td class="num" data-value="{escape(repr(value))}">{escape(format_value(value))}</td>'


def _table(header: list[str], rows: list[str], table_id: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    return (f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def metrics_tables(metrics: dict[str, Any]) -> str:
    """The metric table (one row per metric; original, unlearned, oracle and the
    unlearned model's gap to the oracle ``|unlearned - oracle|``) and the run-level one."""
    roles = [r for r in MODEL_ROLES if isinstance(metrics.get(r), dict)]
    names: list[str] = []
    for role in roles:
        names += [n for n in metrics[role] if n not in names]
    gap = "unlearned" in roles and "oracle" in roles
    parts = []
    if names:
        rows = []
        for name in names:
            cells = "".join(_num_cell(metrics[r].get(name)) for r in roles)
            if gap:
                u, o = metrics["unlearned"].get(name), metrics["oracle"].get(name)
                cells += _num_cell(abs(u - o) if _is_number(u) and _is_number(o) else None)
            rows.append(f'<tr data-metric="{escape(name)}"><th>{escape(name)}</th>'
                        f"{cells}</tr>")
        header = ["metric", *roles] + (["|unlearned - oracle|"] if gap else [])
        parts.append(_table(header, rows, "metrics-table"))
    else:
        parts.append("<p>No per-model metrics were computed.</p>")
    run_values = metrics.get("run") or {}
    if run_values:
        rows = [f'<tr data-metric="{escape(k)}"><th>{escape(k)}</th>{_num_cell(v)}</tr>'
                for k, v in run_values.items()]
        parts.append("<h3>Run-level metrics</h3>"
                     + _table(["run metric", "value"], rows, "run-metrics-table"))
    return "\n".join(parts)


def _configured(summary: RunSummary) -> set[str] | None:
    reporters = (summary.get("config") or {}).get("reporters")
    if reporters is None:
        return None  # every installed reporter
    return {r.get("name") if isinstance(r, dict) else str(r) for r in reporters}


def plots_section(run_dir: Path, summary: RunSummary) -> str:
    """Every PNG under ``plots/`` as a data URI with a heading and a caption, the
    erasus-viz plots first; a note for each erasus-viz plot that is absent and why."""
    run_dir = Path(run_dir)
    errors = ((summary.get("metrics") or {}).get("run_info") or {}).get("reporter_errors") or {}
    configured = _configured(summary)
    parts: list[str] = []
    notes: list[str] = []
    known: set[str] = set()
    for cls in plot_reporters():
        reporter = cls()
        for plot in cls.plots:
            known.add(plot.file)
            path = run_dir / PLOTS_DIR / plot.file
            if path.is_file():
                cite = (f'<p class="cite">Method: {escape(str(cls.paper))}</p>'
                        if cls.paper else "")
                parts.append(_figure(path, plot.title, plot.caption, cite))
                continue
            if cls.name in errors:
                reason = f"the reporter failed: {errors[cls.name]}"
            elif configured is not None and cls.name not in configured:
                reason = f"'{cls.name}' was not among the run's reporters"
            else:
                reason = reporter.absent_reason(run_dir, summary) or (
                    f"the reporter '{cls.name}' failed or did not run (see run.log and "
                    "metrics.json run_info.reporter_errors)")
            notes.append(f'<p class="skipped" data-skipped="{escape(cls.name)}" '
                         f'data-plot="{escape(plot.file)}"><strong>{escape(plot.title)}'
                         f"</strong> ({escape(plot.file)}) was not drawn: {escape(reason)}.</p>")
    plots_dir = run_dir / PLOTS_DIR
    others = sorted(p for p in plots_dir.glob("*.png") if p.name not in known) \
        if plots_dir.is_dir() else []
    for path in others:
        parts.append(_figure(path, path.stem.replace("_", " ").capitalize(),
                             "A plot another reporter wrote into the run directory.", ""))
    if not parts:
        parts.append("<p>No plots were drawn.</p>")
    return "\n".join(parts + notes)


def _figure(path: Path, title: str, caption: str, cite: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    stem = escape(path.stem)
    return (f'<figure id="figure-{stem}"><h3>{escape(title)}</h3>'
            f'<p class="caption">{escape(caption)}</p>{cite}'
            f'<img id="plot-{stem}" data-plot="{escape(path.name)}" alt="{escape(title)}" '
            f'src="data:image/png;base64,{data}"></figure>')


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def environment_section(run_info: dict[str, Any]) -> str:
    """What the run ran on (``run_info``) and what this report was built with."""
    rows = []
    for key, label in (("erasus_version", "erasus (run)"), ("python_version", "python (run)"),
                       ("torch_version", "torch (run)"), ("platform", "platform (run)"),
                       ("device", "device"), ("processes", "processes")):
        if key in run_info:
            rows.append(f"<tr><th>{escape(label)}</th><td>{escape(str(run_info[key]))}"
                        "</td></tr>")
    # what built this page (a rebuild may run elsewhere); older runs recorded no versions
    built = [("erasus (report)", _version("erasus")),
             ("erasus-viz (report)", _version("erasus-viz"))]
    if "python_version" not in run_info:
        built += [("python (report)", platform.python_version()),
                  ("torch (report)", _version("torch")),
                  ("platform (report)", platform.platform())]
    for label, value in built:
        rows.append(f"<tr><th>{escape(label)}</th><td>{escape(value)}</td></tr>")
    return _table(["", "value"], rows, "environment-table")


def timing_section(run_info: dict[str, Any]) -> str:
    """The run's timings in seconds (selection, unlearning, original, oracle...)."""
    keys = [k for k in _TIMING if k in run_info]
    keys += sorted(k for k in run_info if k.endswith("_seconds") and k not in keys)
    rows = [f"<tr><th>{escape(k.removesuffix('_seconds'))}</th>"
            f"{_num_cell(run_info[k])}</tr>" for k in keys]
    if not rows:
        return "<p>The run recorded no timings.</p>"
    return _table(["phase", "seconds"], rows, "timing-table")


def render(run_dir: Path, summary: RunSummary) -> str:
    """The whole ``report.html`` of a run (no network resource: styles inline, images as
    data URIs)."""
    import yaml

    facts = run_facts(summary)
    metrics = summary.get("metrics") or {}
    run_info = metrics.get("run_info") or {}
    title = (f"Erasus run: {facts['strategy']} / {facts['selector']} on {facts['data']} "
             f"({facts['model']}), seed {facts['seed']}")
    described = " · ".join(f"{k}: {v}" for k, v in facts.items())
    errors = run_info.get("reporter_errors") or {}
    error_html = ""
    if errors:
        items = "".join(f"<li><strong>{escape(k)}</strong>: {escape(str(v))}</li>"
                        for k, v in errors.items())
        error_html = (f'<div class="errors" id="reporter-errors"><p>Reporters that failed '
                      f"during the run:</p><ul>{items}</ul></div>")
    history = summary.get("history") or {}
    stopped = history.get("stopped_early")
    steps = len(history.get("steps") or [])
    config_text = yaml.safe_dump(summary.get("config") or {}, sort_keys=False)
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="subtitle">{escape(described)} · run directory '
        f"<code>{escape(run_name(run_dir))}</code> · {steps} unlearning step(s)"
        f"{escape(f' (stopped early: {stopped})') if stopped else ''}</p>",
        error_html,
        '<h2 id="metrics">Metrics</h2>', metrics_tables(metrics),
        '<h2 id="plots">Plots</h2>', plots_section(run_dir, summary),
        '<h2 id="timing">Timing</h2>', timing_section(run_info),
        '<h2 id="environment">Environment</h2>', environment_section(run_info),
        '<h2 id="config">Resolved configuration</h2>',
        "<details><summary>config.resolved.yaml</summary>"
        f'<pre id="config-yaml">{escape(config_text)}</pre></details>',
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(b for b in body if b) + "\n</body></html>\n")


class HTMLReport(Reporter):
    """Write ``report.html``: a self-contained page of the run (no network needed).

    The page has a title naming the strategy, selector, data, model and seed; the metric
    table with one row per metric, columns original / unlearned / oracle and the unlearned
    model's gap to the oracle (``|unlearned - oracle|``), then the run-level metrics; every
    PNG under ``plots/`` embedded as a base64 data URI with a heading and one sentence on
    what it shows (the erasus-viz plots first; a note names each that was not drawn and
    why); the timings (selection, unlearning, original, oracle); the environment (the
    run's erasus version, device and processes; the versions the page was built with); and
    the resolved config as YAML. Styles are inline, so it opens offline. It runs after the
    other reporters (``order`` 100) to embed their plots.
    """

    name = "html_report"
    modalities = ("any",)
    needs = frozenset()
    Params = ReporterParams
    paper = None
    order = 100

    def report(self, run_dir: Path, summary: RunSummary) -> list[Path]:
        return [write_text(Path(run_dir) / "report.html", render(Path(run_dir), summary))]
