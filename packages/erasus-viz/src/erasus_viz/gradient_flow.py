"""The ``gradient_flow`` reporter: per-parameter gradient norms during unlearning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from erasus.reporting import RunSummary

from erasus_viz._base import Plot, PlotReporter
from erasus_viz._common import new_figure, plot_file, save_figure

__all__ = ["GradientFlow", "gradient_table"]

#: At most this many snapshots (columns of the heatmap), evenly spaced.
MAX_SNAPSHOTS = 60
#: At most this many parameter names are written on the axis (every k-th otherwise).
MAX_LABELS = 40


def gradient_table(history: dict[str, Any], max_snapshots: int = MAX_SNAPSHOTS
                   ) -> tuple[list[int], list[str], list[list[float]]]:
    """``(steps, parameter names, norms[parameter][snapshot])`` from
    ``history["gradient_norms"]``: at most ``max_snapshots`` evenly spaced snapshots (the
    first and last always among them); parameters in the order the model names them; NaN
    where a snapshot lacks a parameter (it had no gradient that step)."""
    records = history.get("gradient_norms") or []
    if len(records) > max_snapshots:
        last = len(records) - 1
        picks = sorted({round(i * last / (max_snapshots - 1)) for i in range(max_snapshots)})
        records = [records[i] for i in picks]
    names: list[str] = []
    for record in records:
        names += [n for n in record["norms"] if n not in names]
    nan = float("nan")
    norms = [[float(r["norms"].get(n, nan)) for r in records] for n in names]
    return [int(r["step"]) for r in records], names, norms


class GradientFlow(PlotReporter):
    """Draw ``plots/gradient_flow.png``: per-parameter gradient L2 norms during unlearning.

    Declares ``records = {"gradient_norms"}``, so the run records the norm of each
    parameter's gradient at sampled optimisation steps (at most about 100) in
    ``history.json``. The top panel is a heatmap, parameters (in model order) x sampled
    steps, on a log colour scale; the bottom panel the norms of every parameter at the
    first, middle and last snapshot (log scale): vanishing or exploding gradients and the
    layers a method really changes show up there. A strategy that takes no gradient steps
    records no norms and gets no file.
    """

    name = "gradient_flow"
    paper = None
    records = frozenset({"gradient_norms"})
    plots = (Plot("gradient_flow.png", "Gradient flow",
                  "The L2 norm of each parameter's gradient at sampled unlearning steps "
                  "(heatmap, log scale) and at the first, middle and last snapshot."),)

    def report(self, run_dir: Path, summary: RunSummary) -> list[Path]:
        import numpy as np
        from matplotlib.colors import LogNorm

        steps, names, norms = gradient_table(summary.get("history") or {})
        if not steps or not names:
            return []
        z = np.asarray(norms, dtype=float)
        positive = z[np.isfinite(z) & (z > 0)]
        lo, hi = (positive.min(), positive.max()) if positive.size else (1e-12, 1.0)
        z = np.where(np.isfinite(z) & (z > 0), z, np.nan)
        height = 3 + 0.16 * min(len(names), 3 * MAX_LABELS)
        fig = new_figure(11, height + 3.5)
        top, bottom = fig.subplots(2, 1, height_ratios=[height, 3.5])
        image = top.imshow(z, aspect="auto", interpolation="nearest", cmap="magma",
                           norm=LogNorm(vmin=lo, vmax=max(hi, lo * 1.0001)))
        fig.colorbar(image, ax=top, label="gradient L2 norm")
        every = max(1, -(-len(names) // MAX_LABELS))
        top.set_yticks(range(0, len(names), every), names[::every], fontsize=7)
        columns = range(0, len(steps), max(1, -(-len(steps) // 12)))
        top.set_xticks(list(columns), [str(steps[i]) for i in columns])
        top.set_xlabel("step")
        top.set_title("Gradient norm per parameter")
        for pick, style in ((0, "-"), (len(steps) // 2, "--"), (len(steps) - 1, ":")):
            bottom.plot(range(len(names)), z[:, pick], linestyle=style, marker="o",
                        markersize=3, label=f"step {steps[pick]}")
            if len(steps) == 1:
                break
        bottom.set_yscale("log")
        bottom.set_xticks(range(0, len(names), every), names[::every], rotation=60,
                          ha="right", fontsize=7)
        bottom.set_ylabel("gradient L2 norm")
        bottom.set_xlim(-0.5, len(names) - 0.5)
        bottom.grid(alpha=0.3)
        bottom.legend()
        return [save_figure(fig, plot_file(run_dir, self.plots[0].file))]

    def absent_reason(self, run_dir: Path, summary: RunSummary) -> str | None:
        history = summary.get("history") or {}
        if history.get("gradient_norms"):
            return None
        config = summary.get("config") or {}
        strategy = (config.get("strategy") or {}).get("name", "?")
        if history.get("steps"):
            return ("no gradient norms were recorded (the run did not ask for them: "
                    "gradient_flow was not among its reporters when it ran)")
        return (f"no gradient norms were recorded: the strategy '{strategy}' takes no "
                "gradient steps (a one-shot method)")
