"""The videomae adapter: classification loss, pooled features, groups, persistence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from erasus.data import DataInfo
from erasus.errors import IncompatibleComponentError
from erasus.testing.conformance import tiny_problem
from erasus_audio_video import VideoMAEAdapter, VideoMAEParams
from torch.utils.data.dataloader import default_collate


@pytest.fixture
def problem():
    return tiny_problem(VideoMAEAdapter, 0)  # trained once per session, a fresh copy each


def _raw(problem, n=4):
    return default_collate([problem.retain[i] for i in range(n)])


def test_loss_logits_and_features_match_the_hugging_face_forward(problem):
    adapter = problem.adapter
    batch = adapter.prepare_batch(_raw(problem))
    with torch.no_grad():
        hf_logits = adapter.model(pixel_values=batch["pixel_values"]).logits
        out = adapter.outputs(batch, features=True)
        loss = adapter.per_example_loss(batch)
    assert torch.allclose(out["logits"], hf_logits, atol=1e-6)
    assert torch.allclose(loss, F.cross_entropy(hf_logits, batch["labels"], reduction="none"),
                          atol=1e-6)
    assert torch.allclose(out["loss"], loss)
    assert torch.equal(out["labels"], batch["labels"])
    # the pooled representation is what the classifier reads
    assert out["features"].shape == (4, 32)
    assert torch.allclose(adapter.model.classifier(out["features"]), hf_logits, atol=1e-6)
    assert set(adapter.outputs(batch)) == {"loss", "logits", "labels"}


def test_the_classifier_contract(problem):
    adapter = problem.adapter
    batch = adapter.prepare_batch(_raw(problem))
    assert adapter.num_classes == 4
    assert torch.equal(adapter.labels(batch), batch["labels"])
    other = adapter.with_labels(batch, (batch["labels"] + 1) % 4)
    assert torch.equal(other["labels"], (batch["labels"] + 1) % 4)
    assert other["pixel_values"] is batch["pixel_values"]
    assert "classification" in adapter.modalities and "video" in adapter.modalities


def test_batches_as_pairs_or_dicts_and_shape_errors(problem):
    adapter = problem.adapter
    raw = _raw(problem)
    pair = adapter.prepare_batch((raw["pixel_values"], raw["labels"]))
    assert torch.equal(pair["pixel_values"], adapter.prepare_batch(raw)["pixel_values"])
    with pytest.raises(IncompatibleComponentError, match=r"\[batch, 4, 3, 16, 16\]"):
        adapter.prepare_batch({"pixel_values": torch.zeros(2, 3, 4, 16, 16),
                               "labels": torch.zeros(2)})
    with pytest.raises(IncompatibleComponentError, match="label key"):
        adapter.prepare_batch({"pixel_values": raw["pixel_values"]})


def test_parameter_groups(problem):
    groups = problem.adapter.parameter_groups()
    names = set(groups["all"])
    assert set(groups["head"]) | set(groups["body"]) == names
    assert set(groups["classifier"]) == {"classifier.weight", "classifier.bias"}
    assert set(groups["head"]) == {"classifier.weight", "classifier.bias", "fc_norm.weight",
                                   "fc_norm.bias"}
    assert set(groups["encoder"]) == set(groups["body"])
    assert groups["layer.0"] and all(n.startswith("videomae.encoder.layer.0.")
                                     for n in groups["layer.0"])
    assert set(groups["embeddings"]) == {
        "videomae.embeddings.patch_embeddings.projection.weight",
        "videomae.embeddings.patch_embeddings.projection.bias"}


def test_fresh_model_is_sized_to_the_data():
    info = DataInfo(modality="video", num_classes=5, input_shape=(6, 1, 24, 24))
    adapter = VideoMAEAdapter.build(VideoMAEParams(config={"hidden_size": 16}), info)
    config = adapter.model.config
    assert (config.num_frames, config.num_channels, config.image_size,
            config.num_labels, config.hidden_size) == (6, 1, 24, 5, 16)
    assert adapter.params.num_classes == 5
    with torch.no_grad():
        out = adapter.outputs(adapter.prepare_batch(
            {"pixel_values": torch.rand(2, 6, 1, 24, 24), "labels": torch.tensor([0, 4])}))
    assert out["logits"].shape == (2, 5)
    with pytest.raises(IncompatibleComponentError, match="number of classes"):
        VideoMAEAdapter.build(VideoMAEParams())


def test_reset_parameters_reinitialises_every_weight_with_videomaes_init(problem):
    adapter = problem.adapter
    trained = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    torch.manual_seed(5)
    adapter.reset_parameters()
    torch.manual_seed(5)
    fresh = VideoMAEAdapter.build(VideoMAEParams(), problem.info)
    reset = adapter.model.state_dict()
    for key, value in fresh.model.state_dict().items():
        assert torch.equal(reset[key], value), key
    for name, param in adapter.model.named_parameters():
        assert not torch.equal(param, trained[name]), name


def test_save_writes_a_hugging_face_checkpoint_and_keeps_its_preprocessing(problem, tmp_path):
    from transformers import VideoMAEForVideoClassification

    adapter = problem.adapter
    first = tmp_path / "first"
    adapter.save(first)
    names = {p.name for p in first.iterdir()}
    assert {"config.json", "model.safetensors", "adapter.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    model = VideoMAEForVideoClassification.from_pretrained(first, use_safetensors=True)
    for key, value in adapter.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key

    # a checkpoint's preprocessing config travels with the model it was loaded with
    (first / "preprocessor_config.json").write_text('{"image_mean": [0.5, 0.5, 0.5]}\n')
    loaded = VideoMAEAdapter.load(first)
    assert loaded.num_classes == 4
    second = tmp_path / "second"
    loaded.save(second)
    assert (second / "preprocessor_config.json").read_text() == \
        '{"image_mean": [0.5, 0.5, 0.5]}\n'
    with pytest.raises(IncompatibleComponentError, match="has 4 classes"):
        VideoMAEAdapter.load(first, None, DataInfo(modality="video", num_classes=3))
