"""A whole Stable Diffusion pipeline, built from tiny parts and saved to a directory, loads
through ``diffusers_unet`` and is scored on its VAE latents."""

from __future__ import annotations

import json

import pytest
import torch
from erasus_diffusion.tiny import save_tiny_stable_diffusion
from erasus_diffusion.unet import DiffusersUNetAdapter, _mix

PROMPTS = ["a photo of a cat", "a painting of a house in the style of a dog"]


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    return save_tiny_stable_diffusion(tmp_path_factory.mktemp("sd") / "tiny-sd", seed=0)


@pytest.fixture
def adapter(pipeline_dir):
    return DiffusersUNetAdapter.load(pipeline_dir)


def images(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3, 16, 16), generator=g) * 2 - 1


def test_the_pipeline_directory_is_a_diffusers_stable_diffusion_pipeline(pipeline_dir):
    index = json.loads((pipeline_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(index)


def test_it_loads_as_a_latent_prompt_conditioned_model(adapter):
    from diffusers import AutoencoderKL, PNDMScheduler
    from transformers import CLIPTextModel

    assert adapter.condition == "prompt" and adapter.latent
    assert isinstance(adapter.model.vae, AutoencoderKL)
    assert isinstance(adapter.model.text_encoder, CLIPTextModel)
    assert isinstance(adapter.scheduler, PNDMScheduler)
    # training noise follows the pipeline's own forward process (its betas)
    assert torch.allclose(adapter.noise_scheduler.alphas_cumprod,
                          adapter.scheduler.alphas_cumprod)
    assert not adapter.trains_text_encoder


def test_the_per_example_loss_is_the_denoising_loss_on_vae_latents(adapter):
    m = adapter.model
    x = images()
    batch = adapter.prepare_batch({"image": x, "prompt": PROMPTS})
    with torch.no_grad():
        latents = m.vae.encode(x).latent_dist.mean * m.vae.config.scaling_factor
    assert tuple(batch["x0"].shape) == (2, 4, 8, 8)
    assert torch.allclose(batch["x0"], latents)
    batch["index"] = torch.tensor([5, 6])
    with torch.no_grad():
        loss = adapter.per_example_loss(batch)
    assert loss.shape == (2,) and torch.isfinite(loss).all()

    # by hand, for the second example: its keyed draw, the forward process, the UNet
    g = torch.Generator().manual_seed(_mix(adapter.params.eval_seed, 0, 6))
    t = torch.randint(0, 1000, (1,), generator=g)
    eps = torch.randn((1, 4, 8, 8), generator=g)
    abar = adapter.noise_scheduler.alphas_cumprod[t]
    x_t = abar.sqrt() * latents[1:] + (1 - abar).sqrt() * eps
    ids = adapter.tokenizer([PROMPTS[1]], padding="max_length",
                            max_length=adapter.tokenizer.model_max_length, truncation=True,
                            return_tensors="pt").input_ids
    with torch.no_grad():
        pred = m.unet(x_t, t, encoder_hidden_states=m.text_encoder(ids)[0]).sample
    assert loss[1].item() == pytest.approx(float(((pred - eps) ** 2).mean()), rel=1e-4)


def test_only_the_unet_trains_and_the_groups_name_its_parts(adapter):
    names = [n for n, _ in adapter.model.named_parameters()]
    groups = adapter.parameter_groups()
    assert sorted(groups["cross_attention"]) == sorted(n for n in names if ".attn2." in n)
    assert groups["all"] == groups["unet"]
    assert groups["text_encoder"] and all(n.startswith("text_encoder.")
                                          for n in groups["text_encoder"])
    assert groups["vae"] and all(n.startswith("vae.") for n in groups["vae"])
    adapter.model.train()
    batch = adapter.prepare_batch({"image": images(), "prompt": PROMPTS})
    adapter.per_example_loss(batch).mean().backward()
    with_grad = {n for n, p in adapter.model.named_parameters() if p.grad is not None}
    assert with_grad and with_grad <= set(groups["unet"])


def test_save_writes_a_pipeline_diffusers_loads_and_the_adapter_reloads(adapter, tmp_path):
    from diffusers import StableDiffusionPipeline

    with torch.no_grad():
        next(adapter.model.unet.parameters()).add_(0.01)  # "unlearned"
    out = tmp_path / "unlearned"
    adapter.save(out)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
    assert (out / "model_index.json").is_file() and (out / "adapter.json").is_file()
    pipe = StableDiffusionPipeline.from_pretrained(out, use_safetensors=True,
                                                   safety_checker=None)
    assert torch.equal(next(pipe.unet.parameters()), next(adapter.model.unet.parameters()))
    loaded = DiffusersUNetAdapter.load(out)
    raw = {"image": images(3, seed=1), "prompt": [*PROMPTS, "one"]}
    with torch.no_grad():
        a = adapter.per_example_loss(adapter.prepare_batch(raw))
        b = loaded.per_example_loss(loaded.prepare_batch(raw))
    assert torch.equal(a, b)


def test_reset_parameters_reinitialises_the_unet_and_keeps_the_frozen_parts(adapter):
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    torch.manual_seed(0)
    adapter.reset_parameters()
    after = adapter.model.state_dict()
    frozen = [k for k in after if k.startswith(("vae.", "text_encoder."))]
    assert frozen and all(torch.equal(after[k], before[k]) for k in frozen)
    unet = [k for k in after if k.startswith("unet.") and after[k].is_floating_point()]
    # every randomly initialised UNet weight is redrawn (norm layers restart at 1 and 0,
    # which this untrained pipeline already holds)
    assert all(not torch.equal(after[k], before[k]) for k in unet if "norm" not in k)


def test_erasus_run_unlearns_from_the_pipeline_directory(pipeline_dir, tmp_path):
    import yaml
    from erasus.cli.app import main
    from erasus_diffusion.tiny import TINY_DATA

    config = {"seed": 0, "model": {"name": "diffusers_unet", "path": str(pipeline_dir)},
              "data": {"name": "digits_diffusion", "image_size": 16, "channels": 3,
                       **TINY_DATA},
              "strategy": {"name": "gradient_ascent", "epochs": 2, "lr": 1e-3},
              "oracle": None, "metrics": ["loss"]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        main(["run", str(path), "--output", str(tmp_path / "run"), "--no-progress"])
    except SystemExit as exc:
        assert not exc.code, exc.code
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["unlearned"]["forget_loss"] > metrics["original"]["forget_loss"]
    assert (tmp_path / "run" / "model" / "model_index.json").is_file()


def test_a_loaded_pipeline_object_is_wrapped_in_place(pipeline_dir):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(pipeline_dir, use_safetensors=True,
                                                   safety_checker=None)
    adapter = DiffusersUNetAdapter.from_pipeline(pipe)
    assert adapter.model.unet is pipe.unet and adapter.model.vae is pipe.vae
    with torch.no_grad():
        loss = adapter.per_example_loss(adapter.prepare_batch(
            {"image": images(), "prompt": PROMPTS}))
    assert torch.isfinite(loss).all()


def test_unlearner_wraps_a_pipeline_and_refuses_a_bare_unet(pipeline_dir):
    import erasus
    from diffusers import StableDiffusionPipeline
    from erasus.errors import IncompatibleComponentError

    pipe = StableDiffusionPipeline.from_pretrained(pipeline_dir, use_safetensors=True,
                                                   safety_checker=None)
    unlearner = erasus.Unlearner(pipe, strategy="gradient_ascent", adapter="diffusers_unet")
    assert unlearner.adapter.model.unet is pipe.unet
    with pytest.raises(IncompatibleComponentError, match="wraps a diffusers pipeline"):
        erasus.Unlearner(pipe.unet, strategy="gradient_ascent", adapter="diffusers_unet")
