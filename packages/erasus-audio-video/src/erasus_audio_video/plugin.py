"""The ``audio_video`` plugin of Erasus (entry point ``audio_video = "erasus_audio_video.plugin"``).

It registers, through the ``erasus_register_*`` hooks of :mod:`erasus.hookspecs`:

- models ``whisper`` (modality ``audio``) and ``videomae`` (``video``, ``classification``);
- data sets ``synthetic_speech`` and ``synthetic_video``.

Each hook imports its component modules when called; those import torch and transformers
only inside functions, so building the registry (``erasus list-plugins``) stays fast.
"""

from __future__ import annotations

from typing import Any

from erasus.hookspecs import hookimpl


@hookimpl
def erasus_register_models(register: Any) -> None:
    from erasus_audio_video.videomae import VideoMAEAdapter
    from erasus_audio_video.whisper import WhisperAdapter

    register(WhisperAdapter)
    register(VideoMAEAdapter)


@hookimpl
def erasus_register_datasets(register: Any) -> None:
    from erasus_audio_video.speech import SyntheticSpeech
    from erasus_audio_video.video import SyntheticVideo

    register(SyntheticSpeech)
    register(SyntheticVideo)
