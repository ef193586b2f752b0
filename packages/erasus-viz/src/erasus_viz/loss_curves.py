"""The ``loss_curves`` reporter: the unlearning losses and learning rate per step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from erasus.reporting import RunSummary

from erasus_viz._base import Plot, PlotReporter
from erasus_viz._common import SET_COLOURS, new_figure, plot_file, save_figure

__all__ = ["LossCurves", "loss_series"]

#: Loss columns drawn first, with fixed colours; any other ``*loss`` column follows.
_KNOWN = {"forget_loss": SET_COLOURS["forget"], "retain_loss": SET_COLOURS["retain"],
          "loss": "#222222"}


def loss_series(steps: list[dict[str, Any]]) -> tuple[list[float], dict[str, list[float]],
                                                      list[float] | None]:
    """``(x, {loss name: values}, lr or None)`` from ``history["steps"]``: x is each record's
    ``step`` (else its position from 1); the losses are ``forget_loss``, ``retain_loss``,
    ``loss`` (the total) and any other column whose name ends in ``loss``. A value absent
    from a record is NaN."""
    nan = float("nan")
    x = [float(r.get("step", i + 1)) for i, r in enumerate(steps)]
    names = [n for n in _KNOWN if any(n in r for r in steps)]
    names += sorted({k for r in steps for k in r if k.endswith("loss") and k not in _KNOWN})
    losses = {n: [float(r.get(n, nan)) for r in steps] for n in names}
    lr = [float(r.get("lr", nan)) for r in steps] if any("lr" in r for r in steps) else None
    return x, losses, lr


class LossCurves(PlotReporter):
    """Draw ``plots/loss_curves.png``: forget, retain and total loss per unlearning step.

    The left panel plots every loss the strategy logged per optimisation step (from
    ``history.json``: ``forget_loss`` red, ``retain_loss`` blue, the total ``loss`` black,
    other ``*loss`` columns after them); the right panel the learning rate per step. A
    strategy that takes no steps (a one-shot method) gets no file.
    """

    name = "loss_curves"
    paper = None
    plots = (Plot("loss_curves.png", "Loss curves",
                  "The forget, retain and total losses the strategy logged at each "
                  "optimisation step, and the learning rate."),)

    def report(self, run_dir: Path, summary: RunSummary) -> list[Path]:
        steps = (summary.get("history") or {}).get("steps") or []
        if not steps:
            return []
        from matplotlib.ticker import MaxNLocator

        x, losses, lr = loss_series(steps)
        fig = new_figure(11 if lr else 7, 4)
        axes = fig.subplots(1, 2 if lr else 1, squeeze=False)[0]
        ax = axes[0]
        for name, values in losses.items():
            ax.plot(x, values, label=name, color=_KNOWN.get(name), linewidth=1.4,
                    marker="o" if len(x) < 30 else None, markersize=3)
        for axis in axes:
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title("Unlearning losses")
        ax.grid(alpha=0.3)
        if losses:
            ax.legend()
        if lr:
            axes[1].plot(x, lr, color="#9467bd", linewidth=1.4)
            axes[1].set_xlabel("step")
            axes[1].set_ylabel("learning rate")
            axes[1].set_title("Learning rate")
            axes[1].grid(alpha=0.3)
            axes[1].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        return [save_figure(fig, plot_file(run_dir, self.plots[0].file))]

    def absent_reason(self, run_dir: Path, summary: RunSummary) -> str | None:
        if (summary.get("history") or {}).get("steps"):
            return None
        config = summary.get("config") or {}
        strategy = (config.get("strategy") or {}).get("name", "?")
        return (f"the strategy '{strategy}' took no optimisation steps (a one-shot "
                "method), so there are no loss curves")
