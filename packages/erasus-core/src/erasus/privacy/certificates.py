"""Removal certificates: a record of what was removed and what is guaranteed about it.

A :class:`Certificate` is issued by ``certified_removal`` for each removal request. It
names the removed training indices, how they were removed (a Newton step or retraining
from scratch), the bound on the model's gradient residual on the remaining data, the
``(epsilon, delta)`` guarantee with the objective perturbation's ``sigma``, the residual
budget that ``sigma`` buys, how much of it is spent and left, and hashes of the certified
weights and of the perturbation ``b`` (so a certificate is checked against the very model
it was issued for, see :func:`erasus.privacy.verification.verify`). It round-trips through
JSON.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

__all__ = ["CERTIFICATE_VERSION", "Certificate", "model_hash", "tensor_hash"]

CERTIFICATE_VERSION = 1


def tensor_hash(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes."""
    h = hashlib.sha256()
    _update(h, "", tensor)
    return h.hexdigest()


def _update(h: Any, name: str, tensor: torch.Tensor) -> None:
    import torch

    t = tensor.detach().cpu().contiguous()
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def model_hash(model: torch.nn.Module) -> str:
    """SHA-256 over every tensor of the model's state dict (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        _update(h, name, tensor)
    return h.hexdigest()


@dataclass
class Certificate:
    """One certified removal (see the module docstring); every float is a plain number."""

    #: The removed examples: training-set indices (``index_space="train"``), or positions in
    #: the forget set when the training indices were not known (``"forget"``).
    removed: list[int]
    index_space: Literal["train", "forget"]
    #: ``"newton"``: removed by Newton steps; ``"retrain"``: the budget would have been
    #: exceeded, so the model was retrained from scratch with a fresh perturbation.
    method: Literal["newton", "retrain"]
    #: The bound on ``||grad L_b(w; D')||`` of the certified model (the budget spent).
    residual_bound: float
    #: The part of ``residual_bound`` this request added (0 after a retrain).
    request_bound: float
    epsilon: float
    delta: float
    sigma: float
    l2: float
    gamma: float
    #: The residual ``b ~ N(0, sigma^2)`` certifies at (epsilon, delta): sigma*epsilon/c.
    budget: float
    n_remaining: int
    model_hash: str
    perturbation_hash: str
    version: int = CERTIFICATE_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spent(self) -> float:
        return self.residual_bound

    @property
    def left(self) -> float:
        return max(0.0, self.budget - self.residual_bound)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["spent"] = self.spent
        out["left"] = self.left
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Certificate:
        """Read a certificate (``spent``/``left`` are derived and ignored; unknown keys are
        an error, so a mistyped field is not silently dropped)."""
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k not in ("spent", "left")}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown certificate fields {unknown}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> Certificate:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Certificate:
        return cls.from_json(Path(path).read_text())
