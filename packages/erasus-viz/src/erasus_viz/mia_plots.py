"""The ``mia_plots`` reporter: ROC curves and score histograms of the loss-threshold attack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from erasus.builtin.metrics.mia import LossMIA
from erasus.reporting import ReportContext, ReporterParams, RunSummary
from pydantic import Field

from erasus_viz._base import Plot, PlotReporter
from erasus_viz._common import (
    MODEL_ROLES,
    SET_COLOURS,
    finite_or_none,
    new_figure,
    per_example_losses,
    plot_file,
    read_data,
    sample_indices,
    save_figure,
    write_data,
)

__all__ = ["MIAPlots", "MIAPlotsParams", "attack_roc"]

_ROLE_COLOURS = {"original": "#1f77b4", "unlearned": "#d62728", "oracle": "#2ca02c"}


class MIAPlotsParams(ReporterParams):
    """Parameters of the ``mia_plots`` reporter."""

    max_examples: int = Field(
        1000, ge=2, description="At most this many forget and this many held-out examples "
        "(a seeded subsample) are scored per model.")


def attack_roc(forget_losses: list[float | None], heldout_losses: list[float | None]
               ) -> tuple[list[float], list[float], float]:
    """``(fpr, tpr, auc)`` of the loss-threshold attack: score ``-loss``, the forget
    examples are the members (label 1), the held-out ones the non-members (label 0)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score, roc_curve

    big = np.finfo(float).max  # a non-finite loss (stored as null) is the least member-like
    losses = np.concatenate([np.asarray(forget_losses, dtype=float),
                             np.asarray(heldout_losses, dtype=float)])
    scores = -np.nan_to_num(losses, nan=big, posinf=big)
    labels = np.concatenate([np.ones(len(forget_losses)), np.zeros(len(heldout_losses))])
    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr.tolist(), tpr.tolist(), float(roc_auc_score(labels, scores))


class MIAPlots(PlotReporter):
    """Draw the loss-threshold membership attack (Yeom et al. 2018) on each model.

    ``collect`` scores a seeded subsample of at most ``max_examples`` forget examples (the
    members) and as many held-out examples (the ``test`` split, the non-members) with
    every model of the run (original, unlearned, oracle; an absent one is skipped): their
    per-example losses go to ``plots/data/mia.json``. ``plots/mia_roc.png`` draws the ROC
    curve of the attack whose score is ``-loss``, one curve per model with its AUC in the
    legend (about 0.5: the forget set looks like unseen data); ``plots/mia_histograms.png``
    one panel per model with the histograms of the forget and held-out losses (log axis;
    the attack thresholds them).
    """

    name = "mia_plots"
    Params = MIAPlotsParams
    paper = LossMIA.paper  # the attack of the core's mia metric (Yeom et al. 2018)
    data_file = "mia.json"
    plots = (
        Plot("mia_roc.png", "Membership inference: ROC curves",
             "ROC curves of the loss-threshold membership attack (forget examples as "
             "members, held-out examples as non-members) on each model, with its AUC."),
        Plot("mia_histograms.png", "Membership inference: loss distributions",
             "Histograms of the per-example losses of forget and held-out examples, one "
             "panel per model: the closer the two, the less the model reveals the forget "
             "set."),
    )

    def collect(self, run_dir: Path, context: ReportContext) -> list[Path]:
        p: MIAPlotsParams = self.params  # type: ignore[assignment]
        splits = context.splits
        forget = sample_indices(len(splits.forget), p.max_examples, context.seed)
        heldout = sample_indices(len(splits.test), p.max_examples, context.seed + 1)
        models: dict[str, Any] = {}
        for role in MODEL_ROLES:
            adapter = context.models.get(role)
            if adapter is None:
                continue
            models[role] = {
                name: [finite_or_none(v) for v in per_example_losses(
                    adapter, dataset, indices, collate_fn=splits.collate_fn,
                    batch_size=context.batch_size)]
                for name, dataset, indices in (("forget", splits.forget, forget),
                                               ("heldout", splits.test, heldout))}
        data = {"members": "forget", "nonmembers": "test", "max_examples": p.max_examples,
                "seed": context.seed, "indices": {"forget": forget, "heldout": heldout},
                "losses": models}
        return [write_data(run_dir, self.data_file, data)]

    def report(self, run_dir: Path, summary: RunSummary) -> list[Path]:
        import numpy as np

        data = read_data(run_dir, self.data_file)
        if data is None or not data.get("losses"):
            return []
        losses: dict[str, dict[str, list[float]]] = data["losses"]
        roles = [r for r in MODEL_ROLES if r in losses]

        fig = new_figure(5.5, 5)
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], linestyle="--", color="#888888", linewidth=1,
                label="chance (AUC 0.5)")
        for role in roles:
            fpr, tpr, auc = attack_roc(losses[role]["forget"], losses[role]["heldout"])
            ax.plot(fpr, tpr, color=_ROLE_COLOURS[role], linewidth=1.6,
                    label=f"{role} (AUC {auc:.3f})")
        ax.set_xlabel("false positive rate (held-out flagged as member)")
        ax.set_ylabel("true positive rate (forget flagged as member)")
        ax.set_title("Loss-threshold membership attack")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        written = [save_figure(fig, plot_file(run_dir, self.plots[0].file))]

        # losses span decades (near zero for memorised examples): shared log bins
        floor = 1e-8
        values = np.concatenate([np.asarray(losses[r][s], dtype=float) for r in roles
                                 for s in ("forget", "heldout")])
        values = np.clip(values[np.isfinite(values)], floor, None)
        lo, hi = (float(values.min()), float(values.max())) if values.size else (floor, 1.0)
        bins = np.geomspace(lo, max(hi, lo * 10), 40)
        fig = new_figure(4.2 * len(roles), 3.8)
        axes = fig.subplots(1, len(roles), squeeze=False, sharey=True)[0]
        for ax, role in zip(axes, roles, strict=True):
            for name, label in (("forget", "forget (members)"),
                                ("heldout", "held-out (non-members)")):
                v = np.clip(np.asarray(losses[role][name], dtype=float), floor, None)
                v = v[np.isfinite(v)]
                # fractions, not counts: the two sets differ in size
                ax.hist(v, bins=bins, weights=np.full(len(v), 1 / max(len(v), 1)),
                        alpha=0.55, label=label, color=SET_COLOURS[name])
            ax.set_xscale("log")
            ax.set_title(role)
            ax.set_xlabel("per-example loss (score = -loss)")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("fraction of the set")
        axes[0].legend()
        written.append(save_figure(fig, plot_file(run_dir, self.plots[1].file)))
        return written
