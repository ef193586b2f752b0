"""The ``embeddings`` reporter: PCA and t-SNE maps of the original and unlearned features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from erasus.reporting import ReportContext, ReporterParams, RunSummary
from pydantic import Field

from erasus_viz._base import Plot, PlotReporter
from erasus_viz._common import (
    SET_COLOURS,
    new_figure,
    plot_file,
    prepared_batches,
    read_data,
    sample_indices,
    save_figure,
    write_data,
)

__all__ = ["Embeddings", "EmbeddingsParams", "feature_shift", "project"]

#: The data sets mapped, in drawing order (forget on top).
SETS = ("retain", "test", "forget")
#: The models mapped, one panel each.
ROLES = ("original", "unlearned")


class EmbeddingsParams(ReporterParams):
    """Parameters of the ``embeddings`` reporter."""

    max_examples: int = Field(
        300, ge=2, description="At most this many forget, retain and test examples (a "
        "seeded subsample of each) are mapped.")


def _features(adapter: Any, dataset: Any, indices: list[int], collate_fn: Any,
              batch_size: int) -> Any:
    import torch

    model = adapter.model
    was_training = model.training
    model.eval()
    parts = []
    try:
        with torch.no_grad():
            for batch in prepared_batches(adapter, dataset, indices, collate_fn=collate_fn,
                                          batch_size=batch_size):
                parts.append(adapter.features(batch).detach().float().flatten(1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(parts).numpy()


def project(features: Any, seed: int) -> tuple[Any, Any, list[float], float]:
    """``(pca, tsne, explained variance ratio, perplexity)``: 2-D PCA and t-SNE of the rows
    of ``features`` (t-SNE on its first 50 principal components when it has more; its
    perplexity ``min(30, (n - 1) / 3)``, at least 1, adapted to ``n`` rows)."""
    import numpy as np
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float64)
    n, dim = x.shape
    pca = PCA(n_components=min(2, n, dim), random_state=seed).fit(x)
    coords = pca.transform(x)
    if coords.shape[1] < 2:  # a 1-D feature space: the second axis is flat
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    reduced = PCA(n_components=min(50, n, dim), random_state=seed).fit_transform(x) \
        if dim > 50 else x
    perplexity = float(max(1.0, min(30.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=seed).fit_transform(reduced)
    ratio = [float(v) for v in pca.explained_variance_ratio_]
    return coords, tsne, ratio, perplexity


def feature_shift(original: Any, unlearned: Any, labels: list[str]) -> dict[str, list[float]]:
    """Per set, each example's cosine distance ``1 - cos(f_original, f_unlearned)`` between
    its two feature vectors (rows of ``original`` and ``unlearned`` in ``labels`` order)."""
    import numpy as np

    a = np.asarray(original, dtype=np.float64)
    b = np.asarray(unlearned, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = np.einsum("ij,ij->i", a, b) / np.where(norms > 0, norms, 1.0)
    distance = np.where(norms > 0, 1.0 - cosine, 0.0)
    names = np.asarray(labels)
    return {name: np.round(distance[names == name], 8).tolist() for name in SETS}


class Embeddings(PlotReporter):
    """Draw 2-D maps of the model's features (PCA, and t-SNE: van der Maaten and Hinton 2008).

    ``collect`` takes ``adapter.features()`` (the penultimate layer, an embedding) of a
    seeded subsample of at most ``max_examples`` forget, retain and test examples from the
    original and the unlearned model, and fits PCA and t-SNE jointly on both models'
    features, so the two panels share their axes; only the 2-D coordinates and their labels
    go to ``plots/data/embeddings.json``. ``plots/embeddings_pca.png`` and
    ``plots/embeddings_tsne.png`` draw them, original | unlearned, coloured forget (red),
    retain (blue), test (green): after unlearning the forget points should stop standing out
    from the test points. ``plots/feature_shift.png`` draws, per set, each example's cosine
    distance between its original and unlearned features (stored in the same file), so
    the sets can be compared: a method that only retunes the head moves none of them much.
    A model without ``features()`` records why and draws nothing.
    """

    name = "embeddings"
    Params = EmbeddingsParams
    paper = Paper(
        title="Visualizing Data using t-SNE",
        authors="Laurens van der Maaten, Geoffrey Hinton",
        year=2008,
        url="https://jmlr.org/papers/v9/vandermaaten08a.html",
        venue="JMLR",
    )
    data_file = "embeddings.json"
    plots = (
        Plot("embeddings_pca.png", "Feature embeddings: PCA",
             "The first two principal components of the original and the unlearned model's "
             "features of forget, retain and test examples (fitted on both, shared axes)."),
        Plot("embeddings_tsne.png", "Feature embeddings: t-SNE",
             "A t-SNE map of the original and the unlearned model's features of forget, "
             "retain and test examples (fitted on both jointly)."),
        Plot("feature_shift.png", "Feature shift",
             "How far unlearning moved each example's features: the cosine distance between "
             "the original and the unlearned model's features, per set."),
    )

    def collect(self, run_dir: Path, context: ReportContext) -> list[Path]:
        import numpy as np

        p: EmbeddingsParams = self.params  # type: ignore[assignment]
        splits = context.splits
        indices = {name: sample_indices(len(splits.get(name)), p.max_examples,
                                        context.seed + i)
                   for i, name in enumerate(SETS)}
        roles = [r for r in ROLES if context.models.get(r) is not None]
        blocks = []
        try:
            for role in roles:
                blocks += [_features(context.models[role], splits.get(name), indices[name],
                                     splits.collate_fn, context.batch_size) for name in SETS]
        except (NotImplementedError, IncompatibleComponentError) as exc:
            adapter = context.models[roles[0]]
            reason = (f"the model adapter '{adapter.name}' gives no features"
                      f"{': ' + str(exc) if str(exc) else ''}")
            return [write_data(run_dir, self.data_file, {"skipped": reason})]
        features = np.concatenate(blocks)
        n = len(features) // len(roles)
        pca, tsne, ratio, perplexity = project(features, context.seed)
        labels = [name for name in SETS for _ in indices[name]]

        def split(coords: Any) -> dict[str, list[list[float]]]:
            return {role: np.round(coords[i * n:(i + 1) * n], 6).tolist()
                    for i, role in enumerate(roles)}

        data = {"max_examples": p.max_examples, "seed": context.seed, "labels": labels,
                "indices": indices, "pca": split(pca), "tsne": split(tsne),
                "pca_explained_variance": ratio, "tsne_perplexity": perplexity}
        if len(roles) == 2:
            data["shift"] = feature_shift(features[:n], features[n:], labels)
        return [write_data(run_dir, self.data_file, data)]

    def report(self, run_dir: Path, summary: RunSummary) -> list[Path]:
        data = read_data(run_dir, self.data_file)
        if data is None or "skipped" in data:
            return []
        written = []
        for plot, key, axis in ((self.plots[0], "pca", "PC"), (self.plots[1], "tsne", "t-SNE ")):
            written.append(save_figure(self._draw(data, key, axis), plot_file(run_dir,
                                                                              plot.file)))
        if "shift" in data:
            written.append(save_figure(self._draw_shift(data["shift"]),
                                       plot_file(run_dir, self.plots[2].file)))
        return written

    def absent_reason(self, run_dir: Path, summary: RunSummary) -> str | None:
        data = read_data(run_dir, self.data_file or "")
        if data is not None and not data.get("skipped") and "shift" not in data:
            return "the run has no unlearned model to compare the original's features with"
        return super().absent_reason(run_dir, summary)

    @staticmethod
    def _draw_shift(shift: dict[str, list[float]]) -> Any:
        import numpy as np

        fig = new_figure(6.4, 4.2)
        ax = fig.subplots()
        names = [name for name in SETS if shift.get(name)]
        values = [np.asarray(shift[name], dtype=float) for name in names]
        top = max(float(v.max()) for v in values) if values else 1.0
        bins = np.linspace(0.0, top if top > 0 else 1.0, 31)
        for name, v in zip(names, values, strict=True):
            ax.hist(v, bins=bins, alpha=0.55, color=SET_COLOURS[name],
                    label=f"{name} (median {np.median(v):.3g})")
        ax.set_xlabel("cosine distance, original vs unlearned features")
        ax.set_ylabel("examples")
        ax.legend(loc="best")
        ax.grid(alpha=0.3)
        return fig

    @staticmethod
    def _draw(data: dict[str, Any], key: str, axis: str) -> Any:
        import numpy as np

        labels = np.asarray(data["labels"])
        roles = [r for r in ROLES if r in data[key]]
        fig = new_figure(5 * len(roles), 4.6)
        axes = fig.subplots(1, len(roles), squeeze=False, sharex=True, sharey=True)[0]
        for ax, role in zip(axes, roles, strict=True):
            coords = np.asarray(data[key][role], dtype=float)
            for name in SETS:
                mask = labels == name
                ax.scatter(coords[mask, 0], coords[mask, 1], s=9, alpha=0.7,
                           color=SET_COLOURS[name], label=f"{name} ({int(mask.sum())})",
                           linewidths=0)
            ax.set_title(role)
            ax.set_xlabel(f"{axis}1")
            ax.set_ylabel(f"{axis}2")
            ax.grid(alpha=0.3)
        axes[0].legend(loc="best", markerscale=2)
        return fig
