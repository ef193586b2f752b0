"""Test settings: offline, one torch thread, an isolated cache and plugin environment."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

TIED_REASON = (
    "erasus.checkpoint.CheckpointStore saves model.state_dict() with safetensors.save_file, "
    "which refuses tied weights (GPT-2's lm_head.weight is transformer.wte.weight); the core "
    "must use safetensors.torch.save_model/load_model. Remove this marker once it does.")


def core_checkpoints_tied_weights() -> bool:
    """Whether the core's CheckpointStore can save a model with tied (shared) weights."""
    import tempfile

    import torch
    from erasus.checkpoint import CheckpointStore

    model = torch.nn.Sequential(torch.nn.Embedding(3, 2), torch.nn.Linear(2, 3, bias=False))
    model[1].weight = model[0].weight
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            CheckpointStore(tmp).save(model, opt, sched, {"step": 0})
        except RuntimeError:
            return False
    return True


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "tied_checkpoints: needs checkpoints of tied-weight models (xfail until "
        "the core writes them)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any(item.get_closest_marker("tied_checkpoints") for item in items) and \
            not core_checkpoints_tied_weights():
        for item in items:
            if item.get_closest_marker("tied_checkpoints"):
                item.add_marker(pytest.mark.xfail(reason=TIED_REASON, strict=True))


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("ERASUS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("ERASUS_PLUGINS", raising=False)
    monkeypatch.delenv("ERASUS_STRICT_PLUGINS", raising=False)
    yield
