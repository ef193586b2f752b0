"""Test settings (offline, one torch thread, an isolated cache and plugin environment) and
the memorisation problem shared by the strategy tests."""

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


class Memorised:
    """The memorisation problem of :func:`erasus.testing.tiny.memorisation_data`: the
    original (trained on all 200 training examples), the oracle (retrained on the retain
    set only), their data and the original's baseline numbers."""

    #: How far retain and test accuracy (percentage points) may fall below the original's.
    RETAIN_BOUND, TEST_BOUND = 3.0, 5.0

    def __init__(self) -> None:
        from erasus.testing.tiny import (
            loss_and_accuracy,
            memorisation_classifier,
            memorisation_data,
        )

        train, self.forget, self.retain, self.test = memorisation_data()
        self.original = memorisation_classifier(train)
        self.oracle = memorisation_classifier(self.retain)
        self.forget0 = loss_and_accuracy(self.original, self.forget)
        self.oracle_forget = loss_and_accuracy(self.oracle, self.forget)
        self.retain0 = loss_and_accuracy(self.original, self.retain)[1]
        self.test0 = loss_and_accuracy(self.original, self.test)[1]

    def reference(self):
        """A frozen copy of the original (no gradients, eval mode): a reference model."""
        ref = self.original.clone()
        for p in ref.model.parameters():
            p.requires_grad_(False)
        ref.model.eval()
        return ref

    def check_forgot(self, adapter, *, share: float = 0.3) -> None:
        """Forget loss covered ``share`` of the way to the oracle's (or beyond), forget
        accuracy fell; retain and test accuracy within the bounds."""
        from erasus.testing.tiny import loss_and_accuracy

        loss, acc = loss_and_accuracy(adapter, self.forget)
        (loss0, acc0), (loss_o, acc_o) = self.forget0, self.oracle_forget
        assert loss0 < 0.01 and acc0 == 100 and acc_o <= 75  # the setting is as described
        assert loss >= loss0 + share * (loss_o - loss0), (loss, loss0, loss_o)
        assert acc < acc0, (acc, acc_o)
        assert loss_and_accuracy(adapter, self.retain)[1] >= self.retain0 - self.RETAIN_BOUND
        assert loss_and_accuracy(adapter, self.test)[1] >= self.test0 - self.TEST_BOUND


@pytest.fixture(scope="module")
def memorised() -> Memorised:
    """The memorisation problem (:class:`Memorised`), built once per test module."""
    return Memorised()
