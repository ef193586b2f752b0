"""The whisper adapter: teacher-forced transcript loss, features, groups, persistence."""

from __future__ import annotations

import json

import pytest
import torch
from erasus.data import DataInfo
from erasus.errors import IncompatibleComponentError
from erasus.testing.conformance import tiny_problem
from erasus_audio_video import WhisperAdapter, WhisperParams, collate_speech

START, EOS = 257, 256  # the byte tokenizer's <|startoftranscript|> and <|endoftext|>


@pytest.fixture
def problem():
    return tiny_problem(WhisperAdapter, 0)  # trained once per session, a fresh copy each


def _raw(problem, n=2):
    return collate_speech([problem.forget[i] for i in range(n)])


def _wave(seconds: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(int(16000 * seconds), generator=g)


def test_decoder_inputs_are_the_labels_shifted_right_and_padding_is_masked(problem):
    adapter = problem.adapter
    batch = adapter.prepare_batch({"audio": [_wave(0.3), _wave(0.4, 1)], "text": ["go", "stop"]})
    g, o, s, t, p = map(ord, "gostp")
    assert batch["decoder_input_ids"].tolist() == [[START, g, o, EOS, EOS],
                                                   [START, s, t, o, p]]
    assert batch["labels"].tolist() == [[g, o, EOS, -100, -100], [s, t, o, p, EOS]]
    assert batch["decoder_attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert tuple(batch["input_features"].shape) == (2, 16, 100)


def _hand_loss(adapter, features, decoder_ids, targets, scored_from=0):
    """Mean NLL of ``targets`` (one example, no padding) from a plain model call."""
    with torch.no_grad():
        logits = adapter.model(input_features=features[None],
                               decoder_input_ids=torch.tensor([decoder_ids])).logits[0]
    logp = torch.log_softmax(logits.double(), dim=-1)
    nll = [-logp[j, targets[j]] for j in range(scored_from, len(targets))]
    return float(torch.stack(nll).mean())


def test_loss_is_the_mean_nll_of_the_transcript_and_eos(problem):
    adapter = problem.adapter
    texts = ["up", "down", "stop"]
    raw = {"audio": [_wave(0.5, i) for i in range(3)], "text": texts}
    batch = adapter.prepare_batch(raw)
    with torch.no_grad():
        loss = adapter.per_example_loss(batch)
    assert loss.shape == (3,)
    for i, text in enumerate(texts):
        ids = list(text.encode())
        expected = _hand_loss(adapter, batch["input_features"][i], [START, *ids], [*ids, EOS])
        # the hand computation sees the example alone: padding changes nothing
        assert float(loss[i]) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_prefix_tokens_are_fed_but_not_scored(problem):
    base = problem.adapter
    prefixed = WhisperAdapter(base.model, WhisperParams(prefix_tokens=["!", "#"]),
                              tokenizer=base.tokenizer, feature_extractor=base.feature_extractor)
    raw = {"audio": [_wave(0.5)], "text": ["yes"]}
    batch = prefixed.prepare_batch(raw)
    ids = list(b"yes")
    prefix = [ord("!"), ord("#")]
    assert batch["decoder_input_ids"].tolist() == [[START, *prefix, *ids]]
    assert batch["labels"].tolist() == [[-100, -100, *ids, EOS]]
    with torch.no_grad():
        loss = float(prefixed.per_example_loss(batch)[0])
    expected = _hand_loss(prefixed, batch["input_features"][0], [START, *prefix, *ids],
                          [*prefix, *ids, EOS], scored_from=len(prefix))
    assert loss == pytest.approx(expected, rel=1e-5)
    # another prefix changes the context, never which positions count
    other = WhisperAdapter(base.model, WhisperParams(prefix_tokens=["%", "&"]),
                           tokenizer=base.tokenizer, feature_extractor=base.feature_extractor)
    assert (other.prepare_batch(raw)["labels"] == batch["labels"]).all()


def test_long_transcripts_are_cut_to_max_target_tokens(problem):
    base = problem.adapter
    short = WhisperAdapter(base.model, WhisperParams(max_target_tokens=4),
                           tokenizer=base.tokenizer, feature_extractor=base.feature_extractor)
    batch = short.prepare_batch({"audio": [_wave(0.2)], "text": ["abcdefgh"]})
    assert batch["decoder_input_ids"].tolist() == [[START, *b"abc"]]
    assert batch["labels"].tolist() == [[*b"abc", EOS]]


def test_audio_and_precomputed_features_give_the_same_batch(problem):
    adapter = problem.adapter
    raw = _raw(problem, 3)
    from_audio = adapter.prepare_batch(raw)
    feats = adapter.feature_extractor([a.numpy() for a in raw["audio"]], sampling_rate=16000,
                                      return_tensors="pt")["input_features"]
    from_features = adapter.prepare_batch({"input_features": feats, "text": raw["text"]})
    for key in from_audio:
        assert torch.equal(from_audio[key], from_features[key]), key
    # items with precomputed features collate and prepare the same way
    items = [{"input_features": feats[i], "text": raw["text"][i]} for i in range(3)]
    collated = adapter.prepare_batch(collate_speech(items))
    assert torch.equal(collated["input_features"], from_audio["input_features"])


def test_clips_are_padded_or_cut_to_the_models_input_length(problem):
    adapter = problem.adapter
    long = _wave(2.5)
    cut = adapter.prepare_batch({"audio": [long], "text": ["go"]})["input_features"]
    first_second = adapter.prepare_batch({"audio": [long[:16000]], "text": ["go"]})
    assert cut.shape == (1, 16, 100)
    assert torch.allclose(cut, first_second["input_features"])
    with pytest.raises(IncompatibleComponentError, match=r"\[batch, 16, 100\]"):
        adapter.prepare_batch({"input_features": torch.zeros(1, 16, 80), "text": ["go"]})
    with pytest.raises(IncompatibleComponentError, match="one transcript"):
        adapter.prepare_batch({"audio": [long, long], "text": ["go"]})
    with pytest.raises(IncompatibleComponentError, match="'audio'"):
        adapter.prepare_batch({"text": ["go"]})


def test_features_are_the_mean_pooled_encoder_output(problem):
    adapter = problem.adapter
    batch = adapter.prepare_batch(_raw(problem, 3))
    with torch.no_grad():
        hidden = adapter.model.model.encoder(batch["input_features"]).last_hidden_state
        feats = adapter.features(batch)
        out = adapter.outputs(batch, features=True)
        loss = adapter.per_example_loss(batch)
    assert feats.shape == (3, 32)
    assert torch.allclose(feats, hidden.mean(dim=1))
    assert torch.allclose(out["features"], feats)
    assert torch.allclose(out["loss"], loss, atol=1e-6)
    assert set(adapter.outputs(batch)) == {"loss"}


def test_parameter_groups(problem):
    groups = problem.adapter.parameter_groups()
    names = set(groups["all"])
    assert set(groups["encoder"]) | set(groups["decoder"]) == names  # proj_out is tied
    assert not set(groups["encoder"]) & set(groups["decoder"])
    assert groups["cross_attention"] and all(
        n.startswith("model.decoder.layers.") and ".encoder_attn" in n
        for n in groups["cross_attention"])
    assert {n.split(".encoder_attn")[1].split(".")[1] for n in groups["cross_attention"]} >= {
        "q_proj", "k_proj", "v_proj", "out_proj"}
    assert set(groups["embeddings"]) == {"model.decoder.embed_tokens.weight",
                                         "model.decoder.embed_positions.weight"}
    assert set(groups["encoder.layers.0"]) < set(groups["encoder"])
    assert set(groups["decoder.layers.0"]) >= set(groups["cross_attention"])


def test_reset_parameters_reinitialises_every_weight_with_whispers_init(problem):
    adapter = problem.adapter
    trained = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    torch.manual_seed(3)
    adapter.reset_parameters()
    torch.manual_seed(3)
    fresh = WhisperAdapter.build(WhisperParams(), problem.info)
    reset = adapter.model.state_dict()
    for key, value in fresh.model.state_dict().items():
        assert torch.equal(reset[key], value), key
    for name, param in adapter.model.named_parameters():
        if param.requires_grad:  # the encoder's sinusoidal positions are fixed
            assert not torch.equal(param, trained[name]), name


def test_save_writes_a_hugging_face_checkpoint_without_pickle(problem, tmp_path):
    from transformers import AutoTokenizer, WhisperFeatureExtractor
    from transformers import WhisperForConditionalGeneration as Whisper

    base = problem.adapter
    adapter = WhisperAdapter(base.model, WhisperParams(max_target_tokens=12),
                             tokenizer=base.tokenizer, feature_extractor=base.feature_extractor)
    adapter.save(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json",
            "adapter.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    meta = json.loads((tmp_path / "adapter.json").read_text())
    assert meta["adapter"] == "whisper"
    assert meta["params"]["max_target_tokens"] == 12 and "path" not in meta["params"]
    # a plain Hugging Face checkpoint: transformers reads it without Erasus
    model = Whisper.from_pretrained(tmp_path, use_safetensors=True)
    assert AutoTokenizer.from_pretrained(tmp_path)("go").input_ids[-2:] == list(b"go")
    assert WhisperFeatureExtractor.from_pretrained(tmp_path).feature_size == 16
    for key, value in adapter.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    loaded = WhisperAdapter.load(tmp_path)
    assert loaded.params.max_target_tokens == 12
    raw = _raw(problem)
    with torch.no_grad():
        assert torch.equal(loaded.per_example_loss(loaded.prepare_batch(raw)),
                           adapter.per_example_loss(adapter.prepare_batch(raw)))


def test_load_derives_the_feature_extractor_when_the_checkpoint_has_none(problem, tmp_path):
    problem.adapter.save(tmp_path)
    (tmp_path / "preprocessor_config.json").unlink()
    loaded = WhisperAdapter.load(tmp_path)
    raw = _raw(problem)
    with torch.no_grad():
        assert torch.allclose(loaded.per_example_loss(loaded.prepare_batch(raw)),
                              problem.adapter.per_example_loss(problem.adapter.prepare_batch(raw)))


def test_load_refuses_pickled_weights(problem, tmp_path):
    problem.adapter.model.config.save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(IncompatibleComponentError, match="safetensors"):
        WhisperAdapter.load(tmp_path)


def test_fresh_model_from_config():
    adapter = WhisperAdapter.build(WhisperParams(chunk_seconds=2, config={"d_model": 48}))
    config = adapter.model.config
    assert (config.d_model, config.max_source_positions, config.num_mel_bins) == (48, 100, 16)
    assert adapter.feature_extractor.nb_max_frames == 200
    assert config.vocab_size == len(adapter.tokenizer) == 258
    batch = adapter.prepare_batch({"audio": [_wave(1.5)], "text": ["hi"]})
    assert batch["input_features"].shape == (1, 16, 200)
    with pytest.raises(IncompatibleComponentError, match="vocab_size"):
        WhisperAdapter.build(WhisperParams(config={"vocab_size": 100}))
    with pytest.raises(IncompatibleComponentError, match="chunk_seconds"):
        WhisperAdapter.build(WhisperParams(config={"max_source_positions": 10}))
    with pytest.raises(IncompatibleComponentError, match="16 kHz"):
        WhisperAdapter.build(WhisperParams(),
                             DataInfo(modality="audio", extra={"sampling_rate": 8000}))
    with pytest.raises(IncompatibleComponentError, match="not in the tokenizer"):
        WhisperAdapter.build(WhisperParams(prefix_tokens=["<|en|>"]))


def test_wrap_a_model_with_its_tokenizer_and_feature_extractor(problem):
    base = problem.adapter
    wrapped = WhisperAdapter.wrap((base.model, base.tokenizer, base.feature_extractor))
    assert wrapped.model is base.model and wrapped.tokenizer is base.tokenizer

    class Processor:  # what WhisperProcessor holds
        tokenizer = base.tokenizer
        feature_extractor = base.feature_extractor

    assert WhisperAdapter.wrap((base.model, Processor())).feature_extractor is \
        base.feature_extractor
    with pytest.raises(IncompatibleComponentError, match="processor"):
        WhisperAdapter.wrap(base.model)
