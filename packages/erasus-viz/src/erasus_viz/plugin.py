"""The ``viz`` plugin of Erasus (entry point ``viz = "erasus_viz.plugin"``).

It will register reporters that write plots (loss curves, MIA ROC, embeddings, loss
landscapes, gradient flow), a self-contained report.html and a Plotly dashboard into
each run directory through the ``erasus_register_*`` hooks of :mod:`erasus.hookspecs`.
It implements no hook yet, so it registers no component: it loads, and ``erasus list-
plugins`` shows it, with nothing under it.
"""
