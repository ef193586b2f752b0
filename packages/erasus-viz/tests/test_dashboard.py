"""``erasus report RUN RUN RUN`` writes an offline Plotly dashboard comparing the runs."""

from __future__ import annotations

import re


def test_the_dashboard_compares_the_three_runs_offline(dashboard, three_runs):
    html = dashboard.read_text(encoding="utf-8")
    # plotly.js is inlined once (several MB), never fetched from a CDN
    assert len(html) > 1_000_000
    assert not re.search(r"<script[^>]*\bsrc=", html)
    assert "cdn" not in "".join(re.findall(r"<script[^>]*>", html)).lower()
    assert html.count('class="plotly-graph-div"') == 2
    table = html[html.index('id="runs-table"'):html.index("</table>")]
    for run_dir, strategy in zip(three_runs, ("gradient_difference", "random_label",
                                             "negative_gradient"), strict=True):
        assert f'<tr data-run="{run_dir.name}"><td>{run_dir.name}</td><td>{strategy}</td>' \
            in table
    # the runs' own reports were rebuilt on the way
    assert all((d / "report.html").is_file() for d in three_runs)


def test_the_figures_hold_one_trace_per_run(three_runs):
    from erasus.reporting import read_summary
    from erasus_viz.dashboard import curves_figure, metrics_figure, run_names

    summaries = [read_summary(d) for d in three_runs]
    names = run_names(three_runs)
    assert names == [d.name for d in three_runs]

    curves = curves_figure(names, summaries)
    for panel in ("forget_loss", "retain_loss"):
        traces = [t for t in curves.data if t.meta == panel]
        assert [t.name for t in traces] == names
        for trace, summary in zip(traces, summaries, strict=True):
            assert list(trace.y) == [r[panel] for r in summary["history"]["steps"]]

    bars = metrics_figure(names, summaries)
    metrics = list(summaries[0]["metrics"]["unlearned"])
    for name, summary in zip(names, summaries, strict=True):
        mine = [t for t in bars.data if t.type == "bar" and t.name == name]
        assert [t.y[0] for t in mine] == [summary["metrics"]["unlearned"][m] for m in metrics]
        assert sum(bool(t.showlegend) for t in mine) == 1  # one legend entry per run
    originals = [t for t in bars.data if t.type == "scatter" and t.name == "original"]
    assert list(originals[0].y) == [s["metrics"]["original"][metrics[0]] for s in summaries]


def test_one_run_gets_no_dashboard(cli, three_runs, tmp_path):
    out = tmp_path / "comparison"
    assert cli(["report", str(three_runs[0]), "--output", str(out)]) == 0
    assert not (out / "dashboard.html").exists()
