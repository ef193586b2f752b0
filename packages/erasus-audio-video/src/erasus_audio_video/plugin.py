"""The ``audio_video`` plugin of Erasus (entry point ``audio_video = "erasus_audio_video.plugin"``).

It will register model adapters for Whisper, Wav2Vec2, CLAP, VideoMAE and VideoCLIP-
style encoders, speaker/keyword/class forgetting, word-error-rate and accuracy metrics
and synthetic audio and video benchmarks through the ``erasus_register_*`` hooks of
:mod:`erasus.hookspecs`. It implements no hook yet, so it registers no component: it
loads, and ``erasus list-plugins`` shows it, with nothing under it.
"""
