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


@pytest.fixture(scope="module")
def problem():
    """The tiny trained GPT-2 problem (conformance's, seed 0): forget and retain facts."""
    from erasus.testing import conformance as c
    from erasus_llm.causal_lm import CausalLMAdapter

    return c.tiny_problem(CausalLMAdapter, 0)


@pytest.fixture(scope="session")
def oracle_forget_loss() -> float:
    """The forget loss of the oracle: the tiny model trained on the retain set alone."""
    import torch
    from erasus.testing import conformance as c
    from erasus_llm.causal_lm import CausalLMAdapter, CausalLMParams
    from erasus_llm.datasets import SyntheticQA
    from erasus_llm.tiny import TINY_DATA, TINY_GPT2, train_causal_lm

    splits = SyntheticQA(**TINY_DATA).load(seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        oracle = CausalLMAdapter.build(CausalLMParams(config=TINY_GPT2))
        train_causal_lm(oracle, splits.retain, steps=300, seed=0)
    return c.mean_loss(oracle, splits.forget)
