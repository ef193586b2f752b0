"""Resumable training checkpoints: weights as safetensors, optimizer state without pickle.

A checkpoint directory is replaced atomically: the new one is written beside the old one
and swapped in with ``os.replace``, so a kill at any moment leaves a complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["CheckpointStore", "LoopState"]

LoopState = dict[str, Any]


class CheckpointStore:
    """Writes and reads the training checkpoint kept in ``directory``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @property
    def _tmp(self) -> Path:
        return self.directory.with_name(self.directory.name + ".tmp")

    @property
    def _old(self) -> Path:
        return self.directory.with_name(self.directory.name + ".old")

    def _recover(self) -> None:
        """Finish a swap that a kill interrupted: a complete ``.tmp`` wins, else ``.old``."""
        if (self.directory / "state.json").is_file():
            return
        for candidate in (self._tmp, self._old):
            if (candidate / "state.json").is_file():  # state.json is written last
                if self.directory.exists():
                    shutil.rmtree(self.directory)
                os.replace(candidate, self.directory)
                return

    @property
    def exists(self) -> bool:
        self._recover()
        return (self.directory / "state.json").is_file()

    def save(self, model: torch.nn.Module, optimizer: Any, scheduler: Any,
             state: LoopState) -> None:
        import torch
        from safetensors.torch import save_model

        self._recover()
        tmp = self._tmp
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        # save_model, not save_file: it writes tied weights (GPT-2's lm_head and wte) once
        save_model(model, str(tmp / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state()}, tmp / "optimizer.pt")
        # state.json appears last and whole: its presence marks a complete checkpoint
        (tmp / "state.json.part").write_text(json.dumps(state))
        os.replace(tmp / "state.json.part", tmp / "state.json")
        old = self._old
        if old.exists():
            shutil.rmtree(old)
        if self.directory.exists():
            os.replace(self.directory, old)
        os.replace(tmp, self.directory)
        if old.exists():
            shutil.rmtree(old)

    def load(self, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> LoopState:
        import torch

        self._recover()
        from safetensors.torch import load_model

        load_model(model, str(self.directory / "model.safetensors"),
                   device=str(next(model.parameters()).device))
        extra = torch.load(self.directory / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(extra["optimizer"])
        scheduler.load_state_dict(extra["scheduler"])
        torch.set_rng_state(extra["torch_rng"])
        return json.loads((self.directory / "state.json").read_text())

    def last_step(self) -> int | None:
        if not self.exists:  # recovers an interrupted swap first
            return None
        return int(json.loads((self.directory / "state.json").read_text())["step"])
