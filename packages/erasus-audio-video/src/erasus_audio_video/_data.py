"""Small in-memory datasets of dict items, and the speech batch collate function."""

from __future__ import annotations

from typing import Any

__all__ = ["DictDataset", "collate_speech"]


class DictDataset:
    """A map-style dataset over a list of dict items (each access returns a new dict)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return dict(self.items[int(i)])


def collate_speech(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate speech items into a dict of lists (waveforms differ in length).

    Tensor fields of equal shape (``input_features``) are stacked; integer fields become
    a long tensor; everything else (``audio`` waveforms, ``text``) stays a list. The
    Whisper adapter's ``prepare_batch`` pads and featurises.
    """
    import torch

    if not items:
        return {}
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        first = values[0]
        if isinstance(first, torch.Tensor) and key != "audio" and all(
                v.shape == first.shape for v in values):
            out[key] = torch.stack(values)
        elif isinstance(first, int) and not isinstance(first, bool):
            out[key] = torch.tensor(values, dtype=torch.long)
        else:
            out[key] = values
    return out
