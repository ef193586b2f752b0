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
