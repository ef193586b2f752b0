"""erasus-audio-video: the Erasus plugin for audio and video models.

The plugin itself is :mod:`erasus_audio_video.plugin`, loaded by the core through the
``erasus`` entry-point group; nothing is registered by importing this package. It
provides the ``whisper`` and ``videomae`` model adapters and the ``synthetic_speech`` and
``synthetic_video`` data sets. Importing it does not import torch or transformers.
"""

from __future__ import annotations

from importlib.metadata import version

from erasus_audio_video._data import DictDataset, collate_speech
from erasus_audio_video.speech import SyntheticSpeech, SyntheticSpeechParams
from erasus_audio_video.video import SyntheticVideo, SyntheticVideoParams
from erasus_audio_video.videomae import VideoMAEAdapter, VideoMAEParams
from erasus_audio_video.whisper import WhisperAdapter, WhisperParams

__all__ = [
    "DictDataset",
    "SyntheticSpeech",
    "SyntheticSpeechParams",
    "SyntheticVideo",
    "SyntheticVideoParams",
    "VideoMAEAdapter",
    "VideoMAEParams",
    "WhisperAdapter",
    "WhisperParams",
    "__version__",
    "collate_speech",
]

__version__ = version("erasus-audio-video")
