"""The CLIP adapters: the per-pair contrastive loss, tokenisation, features, parameter
groups, re-initialisation, and checkpoints that open_clip and transformers read too."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from erasus.errors import IncompatibleComponentError
from erasus.testing import conformance as c
from erasus_vlm._clip import contrast_groups, symmetric_contrastive_loss
from erasus_vlm.hf_clip import HFClipAdapter, HFClipParams
from erasus_vlm.open_clip_adapter import TINY_CONFIG, OpenClipAdapter, OpenClipParams

ADAPTERS = [pytest.param(OpenClipAdapter, id="open_clip"),
            pytest.param(HFClipAdapter, id="hf_clip")]


@pytest.fixture(params=ADAPTERS)
def problem(request):
    """The tiny trained problem of each adapter (shared with the conformance suites)."""
    return c.tiny_problem(request.param, 0)


def raw_batch(problem, indices):
    items = [problem.retain[i] for i in indices]
    return {"image": torch.stack([it["image"] for it in items]),
            "text": [it["text"] for it in items]}


def library_logits(adapter, batch) -> torch.Tensor:
    """``logits_per_image`` as the wrapped library's own forward pass computes it."""
    model = adapter.model
    if isinstance(adapter, OpenClipAdapter):
        image, text, scale = model(batch["pixel_values"], batch["input_ids"])
        return scale * image @ text.T
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                pixel_values=batch["pixel_values"])
    return out.logits_per_image


# -- the loss ----------------------------------------------------------------------------
def test_loss_is_the_symmetric_infonce_of_each_pair(problem):
    adapter = problem.adapter
    adapter.model.eval()
    batch = adapter.prepare_batch(raw_batch(problem, [0, 3, 5, 6, 9]))
    with torch.no_grad():
        loss = adapter.per_example_loss(batch)
        logits = library_logits(adapter, batch).double().numpy()
    # by hand: pair i's image picks its text among the batch's texts, and its text picks
    # its image among the batch's images; the loss is the mean of the two cross-entropies
    n = len(logits)
    expected = []
    for i in range(n):
        row = -logits[i, i] + math.log(sum(math.exp(logits[i, j]) for j in range(n)))
        col = -logits[i, i] + math.log(sum(math.exp(logits[j, i]) for j in range(n)))
        expected.append(0.5 * (row + col))
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-4, atol=1e-5)
    assert loss.shape == (n,) and bool((loss > 0).all())


def test_the_batch_mean_is_the_library_training_loss(problem):
    adapter = problem.adapter
    adapter.model.eval()
    batch = adapter.prepare_batch(raw_batch(problem, range(8)))
    with torch.no_grad():
        loss = adapter.per_example_loss(batch)
        if isinstance(adapter, OpenClipAdapter):
            from open_clip import ClipLoss

            image, text, scale = adapter.model(batch["pixel_values"], batch["input_ids"])
            reference = ClipLoss()(image, text, scale)
        else:
            reference = adapter.model(**batch, return_loss=True).loss
    assert float(loss.mean()) == pytest.approx(float(reference), rel=1e-5)


def test_a_pairs_loss_depends_on_the_rest_of_its_batch(problem):
    adapter = problem.adapter
    adapter.model.eval()
    with torch.no_grad():
        first = adapter.per_example_loss(adapter.prepare_batch(raw_batch(problem, [0, 1, 2])))
        other = adapter.per_example_loss(adapter.prepare_batch(raw_batch(problem, [0, 7, 8])))
        larger = adapter.per_example_loss(adapter.prepare_batch(
            raw_batch(problem, [0, 1, 2, *range(3, 20)])))
        shuffled = adapter.per_example_loss(adapter.prepare_batch(raw_batch(problem, [2, 0, 1])))
    assert float(first[0]) != pytest.approx(float(other[0]), rel=1e-4)
    assert float(larger[0]) > float(first[0])  # more negatives: a harder choice
    # the order within the batch does not matter, only its members
    torch.testing.assert_close(shuffled, first[[2, 0, 1]], rtol=1e-5, atol=1e-6)


def test_a_batch_of_one_pair_is_an_error(problem):
    adapter = problem.adapter
    batch = adapter.prepare_batch(raw_batch(problem, [4]))
    with pytest.raises(IncompatibleComponentError, match="at least 2"):
        adapter.per_example_loss(batch)
    with pytest.raises(IncompatibleComponentError, match="at least 2"):
        adapter.outputs(batch)


def test_contrast_groups():
    assert contrast_groups(5, None) == [(0, 5)]
    assert contrast_groups(5, 8) == [(0, 5)]
    assert contrast_groups(6, 2) == [(0, 2), (2, 4), (4, 6)]
    assert contrast_groups(7, 3) == [(0, 3), (3, 7)]  # a last group of one joins the previous
    assert contrast_groups(8, 3) == [(0, 3), (3, 6), (6, 8)]
    with pytest.raises(IncompatibleComponentError):
        contrast_groups(1, None)


def test_contrast_size_scores_each_group_on_its_own(problem):
    adapter = problem.adapter.clone()
    adapter.params = adapter.params.model_copy(update={"contrast_size": 3})
    adapter.model.eval()
    whole = raw_batch(problem, range(7))
    with torch.no_grad():
        grouped = adapter.per_example_loss(adapter.prepare_batch(whole))
        img = adapter.encode_image(adapter.prepare_batch(whole)["pixel_values"])
        txt = adapter.encode_text(adapter.prepare_batch(whole))
        alone = torch.cat([symmetric_contrastive_loss(img[a:b], txt[a:b], adapter.logit_scale)
                           for a, b in ((0, 3), (3, 7))])
    torch.testing.assert_close(grouped, alone)


def test_the_logit_scale_is_clipped_at_100():
    feats = torch.eye(3)
    big = symmetric_contrastive_loss(feats, feats.flip(0), torch.tensor(math.log(1e4)))
    at_100 = symmetric_contrastive_loss(feats, feats.flip(0), torch.tensor(math.log(100.0)))
    torch.testing.assert_close(big, at_100)


def test_gradients_reach_both_towers_and_the_temperature(problem):
    adapter = problem.adapter.clone()
    adapter.model.train()
    adapter.per_example_loss(adapter.prepare_batch(raw_batch(problem, range(6)))).mean().backward()
    groups = adapter.parameter_groups()
    params = dict(adapter.model.named_parameters())
    for group in ("vision", "text", "projection", "logit_scale"):
        assert any(params[n].grad is not None and params[n].grad.abs().sum() > 0
                   for n in groups[group]), group


# -- batches, tokens and features ------------------------------------------------------
def test_prepare_batch_accepts_dicts_and_pairs(problem):
    adapter = problem.adapter
    raw = raw_batch(problem, [0, 1, 2])
    a = adapter.prepare_batch(raw)
    b = adapter.prepare_batch((raw["image"], raw["text"]))
    c_ = adapter.prepare_batch({"images": raw["image"], "captions": raw["text"]})
    d = adapter.prepare_batch({"pixel_values": a["pixel_values"],
                               **{k: v for k, v in a.items() if k != "pixel_values"}})
    for other in (b, c_, d):
        assert other.keys() == a.keys()
        for key in a:
            assert torch.equal(other[key], a[key])
    assert a["pixel_values"].shape == (3, 3, 24, 24)
    assert adapter.batch_size(a) == 3
    with pytest.raises(IncompatibleComponentError, match="text key"):
        adapter.prepare_batch({"image": raw["image"]})
    with pytest.raises(IncompatibleComponentError, match="24x24"):
        adapter.prepare_batch({"image": torch.zeros(2, 3, 16, 16), "text": ["a", "b"]})


def test_tokens_are_the_real_clip_bpe(problem):
    from open_clip import SimpleTokenizer

    adapter = problem.adapter
    texts = ["a red square in the top left", "A Small BLUE circle!"]
    ids = adapter.tokenize(texts)["input_ids"]
    reference = SimpleTokenizer()  # OpenAI's CLIP tokenizer, as open_clip ships it
    for row, text in zip(ids.tolist(), texts, strict=True):
        expected = [49406, *reference.encode(text), 49407]
        assert row[:len(expected)] == expected
    assert ids.shape == (2, 16)


def test_truncated_texts_keep_their_end_token(problem):
    adapter = problem.adapter
    ids = adapter.tokenize(["a " * 40 + "cross"])["input_ids"]
    assert ids.shape == (1, 16)
    assert ids[0, 0] == 49406 and ids[0, -1] == 49407


def test_features_and_outputs(problem):
    adapter = problem.adapter
    adapter.model.eval()
    batch = adapter.prepare_batch(raw_batch(problem, range(5)))
    with torch.no_grad():
        feats = adapter.features(batch)
        out = adapter.outputs(batch, features=True)
        plain = adapter.outputs(batch)
        loss = adapter.per_example_loss(batch)
    assert feats.shape == (5, 32)
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(5))
    assert set(out) == {"loss", "similarity", "features", "text_features"}
    assert set(plain) == {"loss", "similarity"}
    torch.testing.assert_close(out["features"], feats)
    torch.testing.assert_close(out["loss"], loss)
    torch.testing.assert_close(out["similarity"],
                               (out["features"] * out["text_features"]).sum(-1))
    # the pair similarity, unlike the loss, does not depend on the batch
    with torch.no_grad():
        again = adapter.outputs(adapter.prepare_batch(raw_batch(problem, [0, 11, 12])))
    assert float(again["similarity"][0]) == pytest.approx(float(out["similarity"][0]),
                                                          abs=1e-5)


def test_parameter_groups_partition_the_model(problem):
    adapter = problem.adapter
    groups = adapter.parameter_groups()
    names = [n for n, _ in adapter.model.named_parameters()]
    assert set(groups) == {"all", "vision", "text", "projection", "logit_scale"}
    assert groups["all"] == names
    parts = [groups[g] for g in ("vision", "text", "projection", "logit_scale")]
    assert sorted(n for part in parts for n in part) == sorted(names)  # disjoint and complete
    assert groups["logit_scale"] == ["logit_scale"]
    assert len(groups["projection"]) == 2
    vision_prefix = "visual." if isinstance(adapter, OpenClipAdapter) else "vision_model."
    assert all(n.startswith(vision_prefix) for n in groups["vision"])
    assert not any(n.startswith(vision_prefix) for n in groups["text"])


# -- re-initialisation ------------------------------------------------------------------
def test_reset_parameters_reinitialises_every_weight_as_a_new_model(problem):
    adapter = problem.adapter.clone()
    with torch.no_grad():
        for p in adapter.model.parameters():
            p.add_(3.0)
    moved = {n: p.detach().clone() for n, p in adapter.model.named_parameters()}
    torch.manual_seed(7)
    adapter.reset_parameters()
    for name, p in adapter.model.named_parameters():
        assert float((p.detach() - moved[name]).abs().min()) > 0.5, name
    torch.manual_seed(7)
    fresh = type(adapter).build(adapter.params)
    for (name, a), (_, b) in zip(adapter.model.state_dict().items(),
                                 fresh.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    retain = c.mean_loss(adapter, problem.retain)
    assert retain == pytest.approx(math.log(len(problem.retain)), rel=0.1)  # chance level


# -- checkpoints -------------------------------------------------------------------------
def test_open_clip_checkpoint_is_an_open_clip_local_dir(tmp_path):
    import open_clip

    adapter = c.tiny_problem(OpenClipAdapter, 0).adapter
    adapter.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "adapter.json", "model.safetensors", "open_clip_config.json"]
    saved = json.loads((tmp_path / "open_clip_config.json").read_text())
    assert saved["model_cfg"] == TINY_CONFIG
    # open_clip itself loads the directory (it prefers the safetensors file)
    model = open_clip.create_model(f"local-dir:{tmp_path}")
    for (name, a), (_, b) in zip(adapter.model.state_dict().items(),
                                 model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # an open_clip-style directory without adapter.json loads too
    (tmp_path / "adapter.json").unlink()
    (tmp_path / "model.safetensors").rename(tmp_path / "open_clip_model.safetensors")
    loaded = OpenClipAdapter.load(tmp_path)
    assert loaded.model_cfg == TINY_CONFIG
    for (name, a), (_, b) in zip(adapter.model.state_dict().items(),
                                 loaded.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_open_clip_load_takes_the_saved_architecture(tmp_path):
    adapter = c.tiny_problem(OpenClipAdapter, 0).adapter
    adapter.save(tmp_path)
    loaded = OpenClipAdapter.load(tmp_path, OpenClipParams(path=str(tmp_path), contrast_size=4))
    assert loaded.params.contrast_size == 4
    assert loaded.params.model_name == "erasus-tiny-clip"
    with pytest.raises(IncompatibleComponentError, match="model_name"):
        OpenClipAdapter.load(tmp_path, OpenClipParams(model_name="ViT-B-32"))
    with pytest.raises(FileNotFoundError, match="safetensors"):
        (tmp_path / "model.safetensors").unlink()
        OpenClipAdapter.load(tmp_path)


def test_hf_checkpoint_is_a_transformers_directory(tmp_path):
    from transformers import AutoTokenizer, CLIPModel

    adapter = c.tiny_problem(HFClipAdapter, 0).adapter
    adapter.save(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "adapter.json", "tokenizer.json"} <= names
    assert "config" not in json.loads((tmp_path / "adapter.json").read_text())["params"]
    model = CLIPModel.from_pretrained(tmp_path, use_safetensors=True)
    for (name, a), (_, b) in zip(adapter.model.state_dict().items(),
                                 model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    texts = ["a red cross in the bottom right"]
    assert AutoTokenizer.from_pretrained(tmp_path)(texts)["input_ids"][0] == \
        adapter.tokenizer(texts)["input_ids"][0]
    # a save_pretrained directory without tokenizer or adapter.json loads with CLIP's BPE
    for name in names - {"config.json", "model.safetensors"}:
        (tmp_path / name).unlink()
    loaded = HFClipAdapter.load(tmp_path)
    batch = {"image": torch.zeros(2, 3, 24, 24), "text": texts * 2}
    torch.testing.assert_close(loaded.prepare_batch(batch)["input_ids"],
                               adapter.prepare_batch(batch)["input_ids"])


def test_hf_load_refuses_a_config_and_pickled_weights(tmp_path):
    adapter = c.tiny_problem(HFClipAdapter, 0).adapter
    adapter.save(tmp_path)
    with pytest.raises(IncompatibleComponentError, match="only one"):
        HFClipAdapter.load(tmp_path, HFClipParams(config={"projection_dim": 8}))
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="safetensors"):
        HFClipAdapter.load(tmp_path)


# -- building ----------------------------------------------------------------------------
def test_a_custom_open_clip_config_is_registered_in_open_clips_table():
    import open_clip

    config = json.loads(json.dumps(TINY_CONFIG))
    config["embed_dim"] = 16
    adapter = OpenClipAdapter.build(OpenClipParams(model_name="erasus-test-clip-16",
                                                   config=config))
    assert open_clip.get_model_config("erasus-test-clip-16") == config
    assert "erasus-test-clip-16" in open_clip.list_models()
    assert adapter.model.text_projection.shape == (32, 16)
    again = OpenClipAdapter.build(OpenClipParams(model_name="erasus-test-clip-16",
                                                 config=config))  # same config: reused
    assert again.config_name == "erasus-test-clip-16"
    config["embed_dim"] = 8
    with pytest.raises(IncompatibleComponentError, match="differs"):
        OpenClipAdapter.build(OpenClipParams(model_name="erasus-test-clip-16", config=config))


def test_open_clip_build_errors():
    with pytest.raises(IncompatibleComponentError, match="did you mean 'ViT-B-32'"):
        OpenClipAdapter.build(OpenClipParams(model_name="ViT-B-23"))
    siglip = {**TINY_CONFIG, "init_logit_bias": -10.0}
    with pytest.raises(IncompatibleComponentError, match="SigLIP"):
        OpenClipAdapter.build(OpenClipParams(model_name="erasus-test-siglip", config=siglip))


@pytest.mark.parametrize("cls", [OpenClipAdapter, HFClipAdapter])
def test_build_refuses_data_of_another_image_size(cls):
    from erasus.data import DataInfo

    with pytest.raises(IncompatibleComponentError, match="24x24"):
        cls.build(cls.Params(), DataInfo(modality="vision-language", input_shape=(3, 32, 32)))


def test_hf_build_from_a_config():
    config = {"text_config": {"vocab_size": 49408, "hidden_size": 16, "intermediate_size": 32,
                              "num_hidden_layers": 1, "num_attention_heads": 2,
                              "max_position_embeddings": 8, "eos_token_id": 49407},
              "vision_config": {"image_size": 24, "patch_size": 12, "hidden_size": 16,
                                "intermediate_size": 32, "num_hidden_layers": 1,
                                "num_attention_heads": 2},
              "projection_dim": 8}
    adapter = HFClipAdapter.build(HFClipParams(config=config))
    batch = adapter.prepare_batch({"image": torch.zeros(3, 3, 24, 24),
                                   "text": ["a red square", "a blue cross", "a"]})
    assert batch["input_ids"].shape == (3, 8)
    assert adapter.features(batch).shape == (3, 8)
    with pytest.raises(IncompatibleComponentError, match="vocab_size"):
        HFClipAdapter.build(HFClipParams(config={**config, "text_config": {"vocab_size": 100}}))


def test_symmetric_loss_matches_torch_cross_entropy():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    scale = torch.tensor(math.log(20.0))
    logits = 20.0 * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    target = torch.arange(4)
    expected = 0.5 * (F.cross_entropy(logits, target, reduction="none")
                      + F.cross_entropy(logits.T, target, reduction="none"))
    torch.testing.assert_close(symmetric_contrastive_loss(img, txt, scale), expected)
