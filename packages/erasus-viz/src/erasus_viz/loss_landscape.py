"""The ``loss_landscape`` reporter: filter-normalised 2-D loss surfaces (Li et al. 2018)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from erasus.components import Paper
from erasus.reporting import ReportContext, ReporterParams, RunSummary
from pydantic import Field

from erasus_viz._base import Plot, PlotReporter
from erasus_viz._common import (
    finite_or_none,
    mean_loss,
    new_figure,
    plot_file,
    prepared_batches,
    read_data,
    sample_indices,
    save_figure,
    write_data,
)

if TYPE_CHECKING:
    import torch

__all__ = ["LossLandscape", "LossLandscapeParams", "filter_normalized_direction",
           "surface"]

#: The two weight vectors the surfaces are centred on, and the sets their loss is taken on.
CENTRES = ("original", "unlearned")
SETS = ("forget", "retain")


class LossLandscapeParams(ReporterParams):
    """Parameters of the ``loss_landscape`` reporter."""

    resolution: int = Field(9, ge=2, le=101,
                            description="Grid points per axis (the grid has resolution^2).")
    span: float = Field(1.0, gt=0, description="The grid covers [-span, span]^2 in units of "
                        "the filter-normalised directions.")
    max_examples: int = Field(128, ge=1, description="The mean loss at each grid point is "
                              "taken over a seeded subsample of at most this many forget "
                              "and this many retain examples.")


def filter_normalized_direction(params: list[torch.Tensor], generator: torch.Generator
                                ) -> list[torch.Tensor]:
    """A random Gaussian direction in weight space, filter-normalised (Li et al. 2018).

    For each parameter with two or more dimensions, each filter (slice along dim 0) of the
    Gaussian draw is rescaled to the norm of the same filter of the weights; parameters
    with fewer dimensions (biases, norm layers) get a zero direction, as in the paper.
    The draws are made on the CPU in float32 from ``generator``, so a seed gives the same
    direction on every device.
    """
    import torch

    out = []
    for p in params:
        if p.ndim < 2 or not p.is_floating_point():
            out.append(torch.zeros_like(p))
            continue
        d = torch.randn(p.shape, generator=generator, dtype=torch.float32)
        w = p.detach().float().cpu()
        d_norms = d.flatten(1).norm(dim=1)
        w_norms = w.flatten(1).norm(dim=1)
        scale = w_norms / (d_norms + 1e-10)
        d = d * scale.view(-1, *([1] * (p.ndim - 1)))
        out.append(d.to(device=p.device, dtype=p.dtype))
    return out


def surface(adapter: Any, batches: dict[str, list[dict[str, Any]]],
            directions: tuple[list[torch.Tensor], list[torch.Tensor]],
            coords: list[float]) -> dict[str, list[list[float | None]]]:
    """``{set: z}`` with ``z[i][j]`` the mean loss at ``w + coords[i] * d1 + coords[j] * d2``.

    The weights are changed in place under ``torch.no_grad`` and restored exactly (from a
    copy) afterwards, even on error; the model is in eval mode meanwhile.
    """
    import torch

    model = adapter.model
    params = [p for _, p in model.named_parameters()]
    saved = [p.detach().clone() for p in params]
    was_training = model.training
    d1, d2 = directions
    z: dict[str, list[list[float | None]]] = {name: [] for name in batches}
    model.eval()
    try:
        with torch.no_grad():
            for a in coords:
                rows = {name: [] for name in batches}
                for b in coords:
                    for p, w, u, v in zip(params, saved, d1, d2, strict=True):
                        p.copy_(w + a * u + b * v)
                    for name, prepared in batches.items():
                        rows[name].append(finite_or_none(mean_loss(adapter, prepared)))
                for name in batches:
                    z[name].append(rows[name])
    finally:
        with torch.no_grad():
            for p, w in zip(params, saved, strict=True):
                p.copy_(w)
        model.train(was_training)
    return z


class LossLandscape(PlotReporter):
    """Draw loss-landscape contours around the original and the unlearned weights.

    The method of Li et al. (2018): two random Gaussian directions in weight space
    (seeded from the run's seed), filter-normalised (each filter of a direction rescaled to
    the norm of the same filter of the weights; biases and norm layers get a zero
    direction). ``collect`` evaluates the mean loss on a seeded subsample of at most
    ``max_examples`` forget and retain examples at each point of a ``resolution`` x
    ``resolution`` grid over ``[-span, span]^2`` around each centre, restoring the weights
    exactly afterwards, and writes ``plots/data/loss_landscape.json``.
    ``plots/loss_landscape.png`` draws 2x2 contour panels of the log10 loss (rows: centred
    on the original / the unlearned weights; columns: forget / retain set) with the centre
    marked: unlearning should leave the forget loss high around the unlearned weights while
    keeping the retain basin.
    """

    name = "loss_landscape"
    Params = LossLandscapeParams
    paper = Paper(
        title="Visualizing the Loss Landscape of Neural Nets",
        authors="Hao Li, Zheng Xu, Gavin Taylor, Christoph Studer, Tom Goldstein",
        year=2018,
        url="https://arxiv.org/abs/1712.09913",
        venue="NeurIPS",
    )
    data_file = "loss_landscape.json"
    plots = (Plot("loss_landscape.png", "Loss landscape",
                  "Contours of the loss (log10) on forget and retain examples along two "
                  "random filter-normalised directions around the original and the "
                  "unlearned weights (Li et al. 2018); the cross marks the centre."),)

    def collect(self, run_dir: Path, context: ReportContext) -> list[Path]:
        import numpy as np
        import torch

        p: LossLandscapeParams = self.params  # type: ignore[assignment]
        splits = context.splits
        indices = {name: sample_indices(len(splits.get(name)), p.max_examples,
                                        context.seed + i) for i, name in enumerate(SETS)}
        coords = [float(c) for c in np.linspace(-p.span, p.span, p.resolution)]
        surfaces: dict[str, Any] = {}
        centre_loss: dict[str, Any] = {}
        for role in CENTRES:
            adapter = context.models.get(role)
            if adapter is None:
                continue
            generator = torch.Generator().manual_seed(int(context.seed))
            params = [q for _, q in adapter.model.named_parameters()]
            directions = (filter_normalized_direction(params, generator),
                          filter_normalized_direction(params, generator))
            batches = {name: list(prepared_batches(adapter, splits.get(name), indices[name],
                                                   collate_fn=splits.collate_fn,
                                                   batch_size=context.batch_size))
                       for name in SETS}
            surfaces[role] = surface(adapter, batches, directions, coords)
            centre = surface(adapter, batches, directions, [0.0])
            centre_loss[role] = {name: centre[name][0][0] for name in SETS}
        data = {"method": "filter-normalized random directions (Li et al. 2018)",
                "seed": context.seed, "span": p.span, "resolution": p.resolution,
                "max_examples": p.max_examples, "indices": indices, "alphas": coords,
                "betas": coords, "center_loss": centre_loss, "surfaces": surfaces}
        return [write_data(run_dir, self.data_file, data)]

    def report(self, run_dir: Path, summary: RunSummary) -> list[Path]:
        import numpy as np

        data = read_data(run_dir, self.data_file)
        if data is None or not data.get("surfaces"):
            return []
        roles = [r for r in CENTRES if r in data["surfaces"]]
        alphas = np.asarray(data["alphas"], dtype=float)
        betas = np.asarray(data["betas"], dtype=float)
        fig = new_figure(10, 4.2 * len(roles))
        axes = fig.subplots(len(roles), len(SETS), squeeze=False)
        for row, role in zip(axes, roles, strict=True):
            for ax, name in zip(row, SETS, strict=True):
                z = np.asarray(data["surfaces"][role][name], dtype=float)  # None -> nan
                z = np.log10(np.clip(z, 1e-12, None))
                ax.set_title(f"centre: {role} weights, loss on {name}")
                ax.set_xlabel("alpha (direction 1)")
                ax.set_ylabel("beta (direction 2)")
                if np.isfinite(z).sum() < 2 or np.nanmax(z) == np.nanmin(z):
                    ax.text(0.5, 0.5, "loss not finite or flat on the grid", ha="center",
                            transform=ax.transAxes)
                    continue
                # contourf wants z[y][x]; z[i][j] is the loss at (alpha_i, beta_j)
                filled = ax.contourf(alphas, betas, z.T, levels=20, cmap="viridis")
                ax.contour(alphas, betas, z.T, levels=20, colors="white", linewidths=0.4,
                           alpha=0.6)
                fig.colorbar(filled, ax=ax, label="log10 mean loss")
                ax.plot([0], [0], marker="x", color="red", markersize=10, mew=2.5)
        return [save_figure(fig, plot_file(run_dir, self.plots[0].file))]
