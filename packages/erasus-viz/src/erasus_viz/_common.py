"""Shared plumbing of the viz reporters: where files go, atomic writes, figures, losses.

Nothing here imports matplotlib, numpy or torch at module level: the plugin module (and so
``erasus --help``) must stay light; each helper imports what it needs when called.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from erasus.adapters import ModelAdapter
    from erasus.reporting import RunSummary
    from matplotlib.figure import Figure

__all__ = ["MODEL_ROLES", "PLOTS_DIR", "SET_COLOURS", "data_file", "finite_or_none",
           "mean_loss", "new_figure", "per_example_losses", "plot_file", "prepared_batches",
           "read_data", "run_facts", "run_name", "sample_indices", "save_figure", "write_bytes",
           "write_data", "write_text"]

#: Where the PNGs go (relative to the run directory); their data is under ``plots/data``.
PLOTS_DIR = "plots"
#: The models a run may hold, in the order plots show them.
MODEL_ROLES = ("original", "unlearned", "oracle")
#: One colour per data set, the same in every plot.
SET_COLOURS = {"forget": "#d62728", "retain": "#1f77b4", "test": "#2ca02c",
               "heldout": "#2ca02c"}


# -- files -----------------------------------------------------------------------------
def plot_file(run_dir: Path, name: str) -> Path:
    """``RUN_DIR/plots/<name>``."""
    return Path(run_dir) / PLOTS_DIR / name


def data_file(run_dir: Path, name: str) -> Path:
    """``RUN_DIR/plots/data/<name>``."""
    return Path(run_dir) / PLOTS_DIR / "data" / name


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace`` (a reader
    never sees half a file, and a crash leaves the old one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # what a plainly created file gets (mkstemp: 0600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    """:func:`write_bytes` of ``text`` in UTF-8, whatever the locale."""
    return write_bytes(path, text.encode("utf-8"))


def write_data(run_dir: Path, name: str, data: dict[str, Any]) -> Path:
    """Write ``plots/data/<name>`` as JSON (strict: no NaN or infinity)."""
    return write_text(data_file(run_dir, name),
                      json.dumps(data, indent=1, allow_nan=False) + "\n")


def read_data(run_dir: Path, name: str) -> dict[str, Any] | None:
    """The JSON of ``plots/data/<name>``, or ``None`` when the file is absent."""
    path = data_file(run_dir, name)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def finite_or_none(value: float) -> float | None:
    """``value`` as a float, ``None`` when it is NaN or infinite (JSON has neither)."""
    value = float(value)
    return value if math.isfinite(value) else None


# -- figures -----------------------------------------------------------------------------
def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure that needs no display (the object API, Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Render ``fig`` as PNG and write it atomically. The PNG carries no version or date
    metadata, so redrawing the same data gives the same bytes."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return write_bytes(path, buffer.getvalue())


# -- data and models ---------------------------------------------------------------------
def sample_indices(n: int, k: int, seed: int) -> list[int]:
    """At most ``k`` of ``range(n)``, drawn without replacement with ``seed``, sorted."""
    import numpy as np

    if k >= n:
        return list(range(n))
    chosen = np.random.default_rng(int(seed)).choice(n, size=int(k), replace=False)
    return sorted(int(i) for i in chosen)


def prepared_batches(adapter: ModelAdapter, dataset: Any, indices: list[int], *,
                     collate_fn: Any, batch_size: int) -> Iterator[dict[str, Any]]:
    """The adapter's prepared batches of ``dataset[indices]``, in order (with ``index``:
    positions in ``indices``)."""
    from erasus.data import index_loader
    from torch.utils.data import Subset

    for positions, raw in index_loader(Subset(dataset, list(indices)),
                                       batch_size=max(1, int(batch_size)),
                                       collate_fn=collate_fn,
                                       min_batch_size=adapter.min_batch_size):
        batch = adapter.prepare_batch(raw)
        batch["index"] = positions.to(adapter.device)  # as the evaluation context does
        yield batch


def per_example_losses(adapter: ModelAdapter, dataset: Any, indices: list[int], *,
                       collate_fn: Any, batch_size: int) -> list[float]:
    """The per-example loss of each of ``dataset[indices]`` (eval mode, no gradients)."""
    import torch

    model = adapter.model
    was_training = model.training
    model.eval()
    out: list[float] = []
    try:
        with torch.no_grad():
            for batch in prepared_batches(adapter, dataset, indices, collate_fn=collate_fn,
                                          batch_size=batch_size):
                out += adapter.per_example_loss(batch).double().cpu().tolist()
    finally:
        model.train(was_training)
    return out


def mean_loss(adapter: ModelAdapter, batches: list[dict[str, Any]]) -> float:
    """The mean per-example loss over already prepared ``batches`` (the caller sets eval
    mode and disables gradients)."""
    total, count = 0.0, 0
    for batch in batches:
        loss = adapter.per_example_loss(batch)
        total += float(loss.double().sum())
        count += int(loss.shape[0])
    return total / max(count, 1)


# -- the run -----------------------------------------------------------------------------
def run_name(run_dir: Path) -> str:
    """The run directory's published name: during the run, reporters write into the
    hidden ``.<name>.partial`` directory that is renamed to ``<name>`` at the end."""
    name = Path(run_dir).name
    if name.startswith(".") and name.endswith(".partial"):
        return name[1:-len(".partial")]
    return name


def run_facts(summary: RunSummary) -> dict[str, Any]:
    """What ran: the model, data, selector and strategy names and the seed."""
    config = summary.get("config") or {}
    facts: dict[str, Any] = {}
    for key in ("strategy", "selector", "data", "model"):
        section = config.get(key)
        facts[key] = section.get("name") if isinstance(section, dict) else section
    facts["seed"] = config.get("seed")
    return facts
