"""Test settings: offline, one torch thread, an isolated cache and plugin environment."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("ERASUS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("ERASUS_PLUGINS", raising=False)
    monkeypatch.delenv("ERASUS_STRICT_PLUGINS", raising=False)
    yield


def _core_checkpoints_tied_weights() -> bool:
    """Whether the core's CheckpointStore can save a model whose weights are tied."""
    import tempfile

    import torch
    from erasus.checkpoint import CheckpointStore

    model = torch.nn.Sequential(torch.nn.Embedding(3, 2), torch.nn.Linear(2, 3, bias=False))
    model[1].weight = model[0].weight  # tied, like Whisper's proj_out and embed_tokens
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            CheckpointStore(tmp).save(model, opt, sched, {"step": 1})
        except RuntimeError:
            return False
    return True


@pytest.fixture
def tied_checkpoints(request):
    """Mark a test that checkpoints Whisper (tied weights) as an expected failure while the
    core's CheckpointStore cannot save tied weights (safetensors' save_file refuses tensors
    that share memory); once the core saves them, the test runs normally."""
    if not _core_checkpoints_tied_weights():
        request.applymarker(pytest.mark.xfail(
            strict=True, reason="erasus.checkpoint.CheckpointStore.save uses "
            "safetensors.torch.save_file on model.state_dict(), which refuses tied weights "
            "(Whisper's proj_out.weight is model.decoder.embed_tokens.weight); the core "
            "must save with safetensors.torch.save_model / load with load_model"))
