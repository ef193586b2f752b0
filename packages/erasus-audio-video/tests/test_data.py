"""The synthetic_speech and synthetic_video data sets: content, splits, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from erasus.errors import IncompatibleComponentError
from erasus_audio_video import SyntheticSpeech, SyntheticVideo, collate_speech
from erasus_audio_video.speech import letter_formants, speaker_voice, synthesize
from erasus_audio_video.video import DIRECTIONS, SHAPES


def _dominant_hz(clip: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(clip))
    return float(np.fft.rfftfreq(len(clip), 1 / rate)[int(np.argmax(spectrum))])


# -- speech ------------------------------------------------------------------------------
def test_clips_are_words_spoken_with_the_speakers_formants():
    rng = np.random.default_rng(0)
    clip = synthesize("a", 0, rng, noise=0.0)
    assert clip.dtype == np.float32 and np.abs(clip).max() <= 1.0
    f1, _ = letter_formants("a")
    scale = speaker_voice(0)["formant_scale"]
    assert _dominant_hz(clip) == pytest.approx(f1 * scale, rel=0.05)
    # another speaker: another formant scale (vocal tract), another pitch
    other = synthesize("a", 1, np.random.default_rng(0), noise=0.0)
    assert _dominant_hz(other) == pytest.approx(f1 * speaker_voice(1)["formant_scale"], rel=0.05)
    assert speaker_voice(0)["f0"] != speaker_voice(1)["f0"]
    # longer words last longer
    assert len(synthesize("stop", 0, np.random.default_rng(0))) > len(clip)


def test_speech_items_splits_and_run_seed_independence():
    provider = SyntheticSpeech(speakers=3, words=["yes", "no"], train_per_word=2)
    splits = provider.load(seed=0)
    assert len(splits.train) == 3 * 2 * 2 and len(splits.test) == 3 * 2
    item = splits.train[0]
    assert set(item) == {"audio", "text", "speaker"}
    assert item["audio"].dtype == torch.float32 and item["audio"].dim() == 1
    assert {splits.train[i]["text"] for i in range(len(splits.train))} == {"yes", "no"}
    assert splits.info.modality == "audio" and splits.info.extra["sampling_rate"] == 16000
    assert len(splits.forget) == round(0.1 * 12)
    other = provider.load(seed=1)  # another run seed: same audio, another forget draw
    assert all(torch.equal(splits.train[i]["audio"], other.train[i]["audio"])
               for i in range(len(splits.train)))
    batch = splits.collate_fn([splits.train[i] for i in range(3)])
    assert batch["text"] == [splits.train[i]["text"] for i in range(3)]
    assert isinstance(batch["audio"], list) and batch["speaker"].dtype == torch.long


def test_speaker_forgetting():
    splits = SyntheticSpeech(forget={"kind": "speaker", "speaker": 2}).load(seed=0)
    assert {splits.forget[i]["speaker"] for i in range(len(splits.forget))} == {2}
    assert 2 not in {splits.retain[i]["speaker"] for i in range(len(splits.retain))}
    assert len(splits.forget) == 10 * 3
    assert 2 not in {splits.test[i]["speaker"] for i in range(len(splits.test))}
    held_out = splits.extra["test_forgotten_speaker"]
    assert len(held_out) == 10 and {held_out[i]["speaker"] for i in range(10)} == {2}
    with pytest.raises(IncompatibleComponentError, match="only 4 speakers"):
        SyntheticSpeech(forget={"kind": "speaker", "speaker": 4}).load(seed=0)


def test_collate_speech_stacks_equal_shapes_and_keeps_lists():
    items = [{"audio": torch.zeros(3), "input_features": torch.ones(2, 5), "text": "a",
              "speaker": 1}, {"audio": torch.zeros(4), "input_features": torch.ones(2, 5),
                              "text": "b", "speaker": 0}]
    batch = collate_speech(items)
    assert isinstance(batch["audio"], list) and batch["text"] == ["a", "b"]
    assert batch["input_features"].shape == (2, 2, 5)
    assert batch["speaker"].tolist() == [1, 0]


# -- video -------------------------------------------------------------------------------
def _centroids(clip: torch.Tensor) -> np.ndarray:
    """(y, x) centre of the bright shape in each frame."""
    out = []
    for frame in clip.numpy().max(axis=1):  # [frames, channels, H, W] -> brightest channel
        ys, xs = np.nonzero(frame > 0.5)
        out.append((ys.mean(), xs.mean()))
    return np.array(out)


def test_video_clips_move_in_their_labelled_direction():
    splits = SyntheticVideo().load(seed=0)
    names = splits.info.extra["class_names"]
    assert names == list(DIRECTIONS) and splits.info.num_classes == 4
    assert splits.info.input_shape == (4, 3, 16, 16) and splits.info.modality == "video"
    for i in range(0, len(splits.train), 7):
        item = splits.train[i]
        assert item["pixel_values"].shape == (4, 3, 16, 16)
        assert 0.0 <= float(item["pixel_values"].min()) <= float(item["pixel_values"].max()) <= 1
        move = np.diff(_centroids(item["pixel_values"]), axis=0).mean(axis=0)
        dy, dx = DIRECTIONS[names[item["labels"]]]
        assert move == pytest.approx(np.array([dy, dx]) * 3, abs=0.5), (i, move)


def test_video_shape_labels_and_class_forgetting():
    splits = SyntheticVideo(label="shape", forget={"kind": "class", "class_id": 1}).load(seed=0)
    assert splits.info.extra["class_names"] == list(SHAPES)
    assert {splits.forget[i]["labels"] for i in range(len(splits.forget))} == {1}
    assert len(splits.forget) == 24
    assert 1 not in {splits.test[i]["labels"] for i in range(len(splits.test))}
    assert len(splits.extra["test_forgotten_class"]) == 8
    a, b = SyntheticVideo().load(seed=0), SyntheticVideo().load(seed=3)
    assert torch.equal(a.train[5]["pixel_values"], b.train[5]["pixel_values"])
    assert a.forget_indices != b.forget_indices
