"""``synthetic_speech``: speech-like clips of short words by a few synthetic speakers.

No recording or download: every clip is generated in code, deterministically. A word is
spoken letter by letter; each letter is a fixed pair of "formant" tones, modulated by the
speaker's glottal pulse (pitch ``f0``). Speakers differ in pitch, in a formant scale (vocal
tract length) and in speaking rate, so a model can tell them apart, and each clip varies
slightly (rate, pitch, onset, noise) so no two clips are the same.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from erasus.components import Params
from erasus.data import DataInfo, DatasetParams, DatasetProvider, Splits, forget_splits
from erasus.errors import IncompatibleComponentError
from pydantic import Field

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_WORDS",
    "TINY_SPEECH",
    "SpeechForgetParams",
    "SyntheticSpeech",
    "SyntheticSpeechParams",
    "letter_formants",
    "speaker_voice",
    "synthesize",
]

DEFAULT_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


def letter_formants(ch: str) -> tuple[float, float] | None:
    """The two formant frequencies (Hz) of a letter, or ``None`` (a pause) for others."""
    if not ("a" <= ch <= "z"):
        return None
    i = ord(ch) - ord("a")
    # Coprime strides spread the 26 letters over the (F1, F2) plane.
    return 300.0 + 25.0 * ((7 * i) % 26), 1000.0 + 60.0 * ((11 * i) % 26)


def speaker_voice(speaker: int) -> dict[str, float]:
    """Pitch (Hz), formant scale and seconds per letter of a synthetic speaker."""
    return {"f0": 90.0 + 40.0 * (speaker % 6),
            "formant_scale": 0.88 + 0.08 * (speaker % 4),
            "letter_seconds": 0.07 + 0.01 * (speaker % 3)}


def synthesize(word: str, speaker: int, rng: np.random.Generator, *,
               sampling_rate: int = 16000, max_seconds: float = 1.0, noise: float = 0.01
               ) -> np.ndarray:
    """One clip (float32 numpy array in [-1, 1]) of ``speaker`` saying ``word``.

    ``rng`` draws the clip's variations: speaking rate and pitch within 5-10%, the
    silence before the word, the noise.
    """
    import numpy as np
    voice = speaker_voice(speaker)
    rate = rng.uniform(0.9, 1.1)
    f0 = voice["f0"] * rng.uniform(0.95, 1.05)
    scale = voice["formant_scale"]
    seg_n = int(voice["letter_seconds"] * rate * sampling_rate)
    ramp = max(1, int(0.005 * sampling_rate))
    envelope = np.ones(seg_n)
    envelope[:ramp] = np.sin(np.linspace(0, math.pi / 2, ramp)) ** 2
    envelope[-ramp:] = envelope[:ramp][::-1]
    parts = [np.zeros(int(rng.uniform(0.01, 0.05) * sampling_rate))]
    start = 0
    for ch in word.lower():
        formants = letter_formants(ch)
        t = (start + np.arange(seg_n)) / sampling_rate
        start += seg_n
        if formants is None:
            parts.append(np.zeros(seg_n))
            continue
        f1, f2 = formants
        pulse = (0.5 * (1.0 + np.cos(2 * math.pi * f0 * t))) ** 2
        tone = 0.6 * np.sin(2 * math.pi * f1 * scale * t) + \
            0.4 * np.sin(2 * math.pi * f2 * scale * t)
        parts.append(tone * (0.3 + 0.7 * pulse) * envelope)
    parts.append(np.zeros(int(0.02 * sampling_rate)))
    clip = np.concatenate(parts)[: int(max_seconds * sampling_rate)]
    clip = 0.5 * clip / max(float(np.abs(clip).max()), 1e-6)
    clip = clip + noise * rng.standard_normal(len(clip))
    return np.clip(clip, -1.0, 1.0).astype(np.float32)


class SpeechForgetParams(Params):
    """Which training clips to forget."""

    kind: Literal["random", "speaker"] = Field(
        "random", description="'random': a random fraction of the training clips; "
        "'speaker': every training clip of one speaker.")
    fraction: float = Field(
        0.1, gt=0, lt=1, description="Share of the training clips to forget (kind 'random').")
    speaker: int = Field(0, ge=0, description="The speaker to forget (kind 'speaker').")


class SyntheticSpeechParams(DatasetParams):
    """Parameters of the synthetic speech data set."""

    forget: SpeechForgetParams = Field(default_factory=SpeechForgetParams,
                                       description="What to forget: {kind, fraction, speaker}.")
    speakers: int = Field(4, ge=2, le=32, description="Number of synthetic speakers.")
    words: list[str] = Field(
        default_factory=lambda: list(DEFAULT_WORDS), min_length=2,
        description="The vocabulary: each clip says one of these words (its transcript).")
    train_per_word: int = Field(
        3, ge=1, description="Training clips per speaker and word.")
    test_per_word: int = Field(1, ge=1, description="Test clips per speaker and word.")
    sampling_rate: int = Field(16000, ge=1000, description="Samples per second (Whisper: 16 kHz).")
    max_seconds: float = Field(1.0, gt=0, description="Clips are cut to at most this long.")
    noise: float = Field(0.01, ge=0, description="Standard deviation of the added noise.")
    split_seed: int = Field(
        0, description="Seed of the clips themselves (independent of the run seed, so every "
        "run seed sees the same audio).")


class SyntheticSpeech(DatasetProvider):
    """Synthetic speech-like clips of short words by a few speakers (offline, generated).

    Items are dicts ``{"audio": float32 waveform [samples] at sampling_rate, "text": the
    word, "speaker": int}``; the splits' ``collate_fn`` keeps waveforms as lists (they
    differ in length) for the Whisper adapter to featurise. Every speaker says every word
    ``train_per_word`` times in ``train`` and ``test_per_word`` times in ``test`` (fresh
    clips). Each clip is generated from its own seed (``split_seed``, speaker, word,
    repetition), so the audio does not depend on the run seed.

    - Random forgetting (``forget.kind: random``): ``round(fraction * len(train))``
      training clips drawn with the run seed.
    - Speaker forgetting (``forget.kind: speaker``): every training clip of ``speaker``;
      ``test`` then leaves that speaker out, and the split ``test_forgotten_speaker``
      holds that speaker's test clips.
    """

    name = "synthetic_speech"
    modalities = ("audio",)
    Params = SyntheticSpeechParams
    paper = None

    def load(self, *, seed: int) -> Splits:
        import numpy as np
        import torch

        from erasus_audio_video._data import DictDataset, collate_speech

        p: SyntheticSpeechParams = self.params  # type: ignore[assignment]
        if p.forget.kind == "speaker" and p.forget.speaker >= p.speakers:
            raise IncompatibleComponentError(
                f"synthetic_speech: forget.speaker is {p.forget.speaker} but there are only "
                f"{p.speakers} speakers (0..{p.speakers - 1})")

        def clips(split: int, reps: int) -> list[dict]:
            items = []
            for speaker in range(p.speakers):
                for w, word in enumerate(p.words):
                    for rep in range(reps):
                        rng = np.random.default_rng([p.split_seed, split, speaker, w, rep])
                        audio = synthesize(word, speaker, rng, sampling_rate=p.sampling_rate,
                                           max_seconds=p.max_seconds, noise=p.noise)
                        items.append({"audio": torch.from_numpy(audio), "text": word,
                                      "speaker": speaker})
            return items

        train_items = clips(0, p.train_per_word)
        test_items = clips(1, p.test_per_word)
        train = DictDataset(train_items)
        test_full = DictDataset(test_items)
        speakers_train = np.array([item["speaker"] for item in train_items])
        speakers_test = np.array([item["speaker"] for item in test_items])

        forget = p.forget
        return forget_splits(
            train, test_full, seed=seed, fraction=forget.fraction, group="speaker",
            groups=None if forget.kind == "random" else (speakers_train == forget.speaker,
                                                         speakers_test == forget.speaker),
            info=DataInfo(modality="audio", extra={
                "sampling_rate": p.sampling_rate, "max_seconds": p.max_seconds,
                "words": list(p.words), "speakers": p.speakers}),
            collate_fn=collate_speech)


#: The tiny settings of the ``whisper`` adapter's ``tiny_problem`` (and of the tests):
#: 3 speakers x 6 words, 2 training clips and 1 test clip each (36 train, 18 test).
TINY_SPEECH: dict[str, Any] = {
    "speakers": 3,
    "words": ["yes", "no", "up", "down", "stop", "go"],
    "train_per_word": 2,
    "test_per_word": 1,
    "forget": {"kind": "random", "fraction": 0.15},
}
