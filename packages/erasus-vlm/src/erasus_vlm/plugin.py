"""The ``vlm`` plugin of Erasus (entry point ``vlm = "erasus_vlm.plugin"``).

It registers, through the ``erasus_register_*`` hooks of :mod:`erasus.hookspecs`:

- models ``open_clip`` (CLIP through open_clip) and ``hf_clip`` (transformers'
  ``CLIPModel``), modality ``vision-language``;
- the dataset ``synthetic_image_text`` (coloured shapes and their captions, generated
  offline).

Each hook imports its component modules when called; those import torch, open_clip and
transformers only inside functions, so building the registry stays fast.
"""

from __future__ import annotations

from typing import Any

from erasus.hookspecs import hookimpl


@hookimpl
def erasus_register_models(register: Any) -> None:
    from erasus_vlm.hf_clip import HFClipAdapter
    from erasus_vlm.open_clip_adapter import OpenClipAdapter

    register(OpenClipAdapter)
    register(HFClipAdapter)


@hookimpl
def erasus_register_datasets(register: Any) -> None:
    from erasus_vlm.synthetic import SyntheticImageText

    register(SyntheticImageText)
