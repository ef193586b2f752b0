"""Tiny diffusion models and data that build offline, for tests, examples and fresh models.

- :func:`tiny_clip_tokenizer`: a ``CLIPTokenizer`` built in code (byte-level alphabet plus
  whole-word merges for a small word list), so prompt-conditioned models need no download;
- :func:`tiny_diffusion_problem`: the adapter's ``tiny_problem``: a tiny class-conditional
  UNet trained on four digit classes, with one class to forget;
- :func:`save_tiny_stable_diffusion`: a whole tiny ``StableDiffusionPipeline`` (UNet, VAE,
  CLIP text encoder and tokenizer) written with ``save_pretrained``, as a pipeline from the
  hub would be on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from erasus.adapters import TinyProblem

__all__ = [
    "TINY_WORDS",
    "save_tiny_stable_diffusion",
    "tiny_clip_tokenizer",
    "tiny_diffusion_problem",
    "train_denoiser",
]

#: Words the tiny tokenizer keeps whole (others are spelt out byte by byte).
TINY_WORDS: tuple[str, ...] = (
    "a", "an", "the", "of", "photo", "picture", "image", "handwritten", "digit", "number",
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "cat", "dog", "car", "tree", "house", "person", "painting", "style", "in", "by",
)


def _bytes_to_unicode() -> dict[int, str]:
    # CLIP's (and GPT-2's) reversible byte-to-printable-character table.
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


def tiny_clip_tokenizer(words: tuple[str, ...] = TINY_WORDS, *, model_max_length: int = 16
                        ) -> Any:
    """A ``CLIPTokenizer`` built offline: 256 byte symbols (with and without the ``</w>``
    end-of-word mark), one merge chain per word of ``words``, and CLIP's special tokens."""
    from transformers import CLIPTokenizer

    alphabet = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for symbol in alphabet + [s + "</w>" for s in alphabet]:
        vocab[symbol] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in words:
        pieces = [*word[:-1], word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            if (current, piece) not in merges:
                merges.append((current, piece))
            current += piece
            vocab.setdefault(current, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def tiny_clip_text_encoder(tokenizer: Any, *, hidden_size: int = 32, layers: int = 2,
                           heads: int = 2) -> Any:
    """A randomly initialised ``CLIPTextModel`` sized for ``tokenizer`` (uses the torch RNG)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=heads,
        max_position_embeddings=int(tokenizer.model_max_length),
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    return CLIPTextModel(config)


def train_denoiser(adapter: Any, dataset: Any, *, steps: int, lr: float = 2e-3,
                   batch_size: int = 32, seed: int = 0, collate_fn: Any = None) -> None:
    """Plain training of a ``diffusers_unet`` adapter on its denoising loss (tiny originals).

    Batches are drawn in a seeded order and the noise from the global torch RNG, seeded
    here, so the result depends only on ``seed``.
    """
    import torch
    from torch.utils.data.dataloader import default_collate

    collate = collate_fn or default_collate
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = adapter.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            order += torch.randperm(len(dataset), generator=g).tolist()
        picked, order = order[:batch_size], order[batch_size:]
        batch = adapter.prepare_batch(collate([dataset[i] for i in picked]))
        loss = adapter.per_example_loss(batch).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()


def tiny_diffusion_problem(seed: int = 0) -> TinyProblem:
    """A tiny class-conditional UNet trained on 8x8 digits 0-3; forget = every digit 0.

    Data: :class:`~erasus_diffusion.digits.DigitsDiffusion` with ``classes=[0, 1, 2, 3]``
    and 40 images per class (30 train, 10 test each); the forget set is the 30 training
    images of digit 0 and the test set the 30 test images of digits 1-3. The model is the
    adapter's default fresh build (about 0.25M parameters), trained for 150 Adam steps.
    """
    import torch
    from erasus.adapters import TinyProblem

    from erasus_diffusion.digits import DigitsDiffusion
    from erasus_diffusion.unet import DiffusersUNetAdapter, DiffusersUNetParams

    splits = DigitsDiffusion(**TINY_DATA).load(seed=seed)
    torch.manual_seed(seed)
    adapter = DiffusersUNetAdapter.build(DiffusersUNetParams(), splits.info)
    train_denoiser(adapter, splits.train, steps=150, seed=seed)
    return TinyProblem(adapter, splits.forget, splits.retain, splits.test,
                       collate_fn=splits.collate_fn, info=splits.info, extra=splits.extra)


#: The data of the tiny problem (``DigitsDiffusion`` parameters); configs reuse it.
TINY_DATA: dict[str, Any] = {
    "classes": [0, 1, 2, 3],
    "per_class": 40,
    "forget": {"kind": "class", "class_id": 0},
}


def save_tiny_stable_diffusion(directory: str | Path, *, seed: int = 0,
                               image_size: int = 16) -> Path:
    """Write a tiny ``StableDiffusionPipeline`` to ``directory`` with ``save_pretrained``.

    Parts: a ``UNet2DConditionModel`` over 4-channel latents of ``image_size / 2`` pixels, an
    ``AutoencoderKL`` (RGB ``image_size`` x ``image_size`` to those latents), a
    ``CLIPTextModel`` and the offline :func:`tiny_clip_tokenizer`, a ``PNDMScheduler`` (as
    Stable Diffusion ships), no safety checker. Weights are random (seeded).
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer()
    text_encoder = tiny_clip_text_encoder(tokenizer, hidden_size=32)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), layers_per_block=1,
        norm_num_groups=8, sample_size=image_size)
    unet = UNet2DConditionModel(
        sample_size=image_size // 2, in_channels=4, out_channels=4,
        block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, skip_prk_steps=True,
                              steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    directory = Path(directory)
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory
