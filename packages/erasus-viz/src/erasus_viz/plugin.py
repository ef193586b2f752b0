"""The ``viz`` plugin of Erasus (entry point ``viz = "erasus_viz.plugin"``).

Registers seven reporters through ``erasus_register_reporters``: ``loss_curves``,
``mia_plots``, ``embeddings``, ``loss_landscape`` and ``gradient_flow`` draw PNGs under
``RUN_DIR/plots/`` (model-dependent data is collected at the end of the run into
``RUN_DIR/plots/data/*.json``, so ``erasus report RUN_DIR`` redraws everything without the
models); ``html_report`` writes a self-contained ``RUN_DIR/report.html`` embedding them;
``dashboard`` writes an interactive Plotly ``dashboard.html`` comparing several runs
(``erasus report RUN_DIR RUN_DIR...``). The hook imports the reporter modules when called;
they import matplotlib, plotly, scikit-learn and torch only inside functions, so loading
the plugin (``erasus --help``, ``erasus list-plugins``) stays light.
"""

from __future__ import annotations

from typing import Any

from erasus.hookspecs import hookimpl


@hookimpl
def erasus_register_reporters(register: Any) -> None:
    from erasus_viz.dashboard import Dashboard
    from erasus_viz.embeddings import Embeddings
    from erasus_viz.gradient_flow import GradientFlow
    from erasus_viz.html_report import HTMLReport
    from erasus_viz.loss_curves import LossCurves
    from erasus_viz.loss_landscape import LossLandscape
    from erasus_viz.mia_plots import MIAPlots

    for reporter in (LossCurves, MIAPlots, Embeddings, LossLandscape, GradientFlow,
                     HTMLReport, Dashboard):
        register(reporter)
