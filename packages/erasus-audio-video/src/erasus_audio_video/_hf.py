"""Shared plumbing of the Hugging Face adapters: imports, loading, saving, re-initialising.

Both adapters keep a whole Hugging Face checkpoint directory: the model written with
``save_pretrained(safe_serialization=True)`` (``config.json`` + ``model.safetensors``), its
preprocessing files (tokenizer, feature extractor / processor configs) and Erasus's
``adapter.json``. Weights are read with ``from_pretrained(..., use_safetensors=True)`` only,
so a directory holding nothing but pickled weights is refused.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erasus.adapters import ADAPTER_FILE
from erasus.errors import IncompatibleComponentError, MissingDependencyError

if TYPE_CHECKING:
    import torch

__all__ = [
    "copy_files",
    "fit",
    "fresh_copy_init",
    "is_local_dir",
    "load_hf_model",
    "quiet_progress",
    "read_adapter_params",
    "require_transformers",
    "save_model",
    "write_adapter_json",
]


def require_transformers() -> Any:
    """``import transformers``, or an error naming the package to install."""
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - transformers is a declared dependency
        raise MissingDependencyError(
            f"the audio/video adapters need transformers ({exc}); "
            'pip install "erasus[audio-video]" (or: pip install transformers)') from None
    return transformers


def is_local_dir(path: str | Path) -> bool:
    return Path(path).expanduser().is_dir()


def read_adapter_params(path: str | Path) -> dict[str, Any]:
    """The ``params`` an earlier :meth:`save` wrote to ``adapter.json`` (empty if none)."""
    meta_file = Path(path).expanduser() / ADAPTER_FILE
    if not meta_file.is_file():
        return {}
    return dict(json.loads(meta_file.read_text()).get("params", {}))


def write_adapter_json(directory: Path, name: str, params: dict[str, Any]) -> None:
    params = dict(params)
    params.pop("path", None)
    (directory / ADAPTER_FILE).write_text(
        json.dumps({"adapter": name, "params": params}, indent=2) + "\n")


def load_hf_model(model_cls: type, path: str | Path, *, what: str) -> Any:
    """``model_cls.from_pretrained(path, use_safetensors=True)`` with an error that helps.

    ``path`` is a local directory or, when the hub is reachable, a hub id.
    """
    source = str(Path(path).expanduser()) if is_local_dir(path) else str(path)
    if is_local_dir(path) and not any(Path(source).glob("*.safetensors")):
        raise IncompatibleComponentError(
            f"{what}: no *.safetensors weights in {source}; Erasus loads weights only from "
            "safetensors (never pickle). Convert the checkpoint with "
            "model.save_pretrained(dir, safe_serialization=True)")
    try:
        with quiet_progress():
            return model_cls.from_pretrained(source, use_safetensors=True)
    except OSError as exc:
        raise IncompatibleComponentError(
            f"{what}: cannot load '{path}' ({exc}); give a local directory written by "
            "save_pretrained (or a hub id, when the hub is reachable)") from None


def copy_files(source: Path | None, directory: Path, names: tuple[str, ...]) -> None:
    """Copy the files ``names`` that exist in ``source`` into ``directory``."""
    if source is None:
        return
    for name in names:
        src = source / name
        if src.is_file() and src.resolve() != (directory / name).resolve():
            shutil.copyfile(src, directory / name)


def fresh_copy_init(model: torch.nn.Module) -> None:
    """Re-initialise every weight of a transformers model with the model's own init.

    A new instance of the same class is built from the same config, which runs the
    family's ``post_init()`` / ``_init_weights`` on every module, and its state is copied
    into ``model`` in place (so optimizers and references to the parameters stay valid).
    Calling ``model.init_weights()`` on a loaded model is not enough: transformers marks
    loaded weights as initialised and skips them. Draws from the global torch RNG; holds
    a second copy of the weights (on the CPU) while it runs.
    """
    fresh = type(model)(model.config)
    state = fresh.state_dict()
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise IncompatibleComponentError(
            f"cannot re-initialise {', '.join(missing[:5])}: a fresh "
            f"{type(model).__name__} built from the same config has no such weights")
    model.load_state_dict(state, strict=True)


def fit(adapter: Any, dataset: Any, collate_fn: Any = None, *, steps: int, lr: float,
        batch_size: int, seed: int = 0) -> None:
    """Plain supervised training of an adapter on a tiny dataset (makes tiny originals).

    The whole dataset is prepared once (one canonical batch) and minibatches are slices
    of it, so feature extraction runs once, not every step. Adam on the mean
    per-example loss; minibatches drawn with a generator seeded by ``seed``.
    """
    import torch
    from torch.utils.data.dataloader import default_collate

    collate = collate_fn or default_collate
    full = adapter.prepare_batch(collate([dataset[i] for i in range(len(dataset))]))
    n = len(dataset)
    g = torch.Generator().manual_seed(int(seed))
    model = adapter.model
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        idx = torch.randperm(n, generator=g)[:batch_size].to(adapter.device)
        batch = {k: v.index_select(0, idx) if hasattr(v, "index_select") else v
                 for k, v in full.items()}
        loss = adapter.per_example_loss(batch).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()



@contextmanager
def quiet_progress() -> Iterator[None]:
    """No transformers progress bars inside (one "Loading weights" / "Writing model shards"
    bar per load or save of a tiny model would clutter every run's output)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def save_model(model: Any, directory: Path) -> None:
    """``model.save_pretrained(directory, safe_serialization=True)``, quietly."""
    with quiet_progress():
        model.save_pretrained(directory, safe_serialization=True)
