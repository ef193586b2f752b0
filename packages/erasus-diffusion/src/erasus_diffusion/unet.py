"""The ``diffusers_unet`` adapter: a diffusers ``UNet2DConditionModel`` and its noise schedule.

Torch, diffusers and transformers are imported inside functions only, so registering the
plugin stays light.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from erasus.adapters import ADAPTER_FILE, WEIGHTS_FILE, ModelAdapter, ModelParams, TinyProblem
from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from pydantic import Field

if TYPE_CHECKING:
    import torch
    from erasus.data import DataInfo

__all__ = ["PREDICTION_TYPES", "DiffusersUNetAdapter", "DiffusersUNetParams"]

#: The ``prediction_type`` values of a diffusers scheduler that the loss supports.
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")

_IMAGE_KEYS = ("image", "images", "pixel_values")
_CLASS_KEYS = ("class_label", "class_labels", "label", "labels", "y")
_PROMPT_KEYS = ("prompt", "prompts", "text", "caption")
_MASK64 = (1 << 64) - 1
_FEATURE_STREAM = 1  # the keyed draws of features() are independent of the loss's


class DiffusersUNetParams(ModelParams):
    """Parameters of the ``diffusers_unet`` adapter.

    Loading (``path``) takes the architecture from the saved configs; the architecture
    fields below only shape a freshly built model (``path`` unset), whose defaults are a
    tiny class-conditional UNet for 8x8 images.
    """

    path: str | None = Field(
        None, description="What to load: a directory written by this adapter, a diffusers "
        "StableDiffusionPipeline directory (model_index.json with unet, scheduler, "
        "text_encoder, tokenizer, vae), or a hub id when the hub is reachable. Unset: build "
        "a fresh model from the fields below.")
    condition: Literal["class", "prompt"] | None = Field(
        None, description="What conditions the UNet: 'class' (learned class tokens) or "
        "'prompt' (a CLIP text encoder). Unset: that of the loaded model; 'class' for a "
        "fresh one.")
    num_classes: int | None = Field(
        None, ge=1, description="Number of classes of a fresh class-conditional model "
        "(default: from the data set).")
    class_tokens: int = Field(
        4, ge=1, description="Cross-attention tokens per class of a fresh class-conditional "
        "model.")
    channels: int | None = Field(
        None, ge=1, description="Image channels of a fresh model (default: from the data "
        "set, else 1).")
    sample_size: int | None = Field(
        None, ge=1, description="Image height and width of a fresh model (default: from "
        "the data set, else 8).")
    block_out_channels: list[int] = Field(
        default_factory=lambda: [16, 32], min_length=1,
        description="Channels of each UNet resolution level of a fresh model.")
    down_block_types: list[str] | None = Field(
        None, description="diffusers down-block types of a fresh model (default: "
        "DownBlock2D at the first level, CrossAttnDownBlock2D at every lower one).")
    up_block_types: list[str] | None = Field(
        None, description="diffusers up-block types of a fresh model (default: the mirror "
        "of the down blocks).")
    layers_per_block: int = Field(1, ge=1, description="ResNet layers per UNet block.")
    cross_attention_dim: int = Field(
        32, ge=1, description="Width of the condition tokens (class tokens or text encoder "
        "hidden size) of a fresh model.")
    attention_head_dim: int = Field(8, ge=1, description="Attention head width of a fresh "
                                    "model.")
    norm_num_groups: int = Field(
        8, ge=1, description="GroupNorm groups of a fresh UNet (must divide every "
        "block_out_channels entry).")
    text_layers: int = Field(2, ge=1, description="Transformer layers of a fresh text "
                             "encoder (condition 'prompt').")
    max_prompt_length: int = Field(
        16, ge=3, description="Token length of a fresh model's tokenizer (prompts are padded "
        "and truncated to it).")
    num_train_timesteps: int = Field(
        1000, ge=2, description="Diffusion steps T of a fresh model's DDPMScheduler.")
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = Field(
        "linear", description="Noise (beta) schedule of a fresh model's DDPMScheduler.")
    prediction_type: Literal["epsilon", "v_prediction", "sample"] | None = Field(
        None, description="What the UNet predicts (the loss target): the noise, the "
        "velocity or the clean sample. Unset: the scheduler's (a fresh model: epsilon).")
    train_text_encoder: bool | None = Field(
        None, description="Whether the denoising loss also trains the text encoder. Unset: "
        "yes for a freshly built one, no for a loaded (pretrained) one.")
    noise_draws: int = Field(
        1, ge=1, description="(timestep, noise) draws averaged in each example's loss.")
    eval_seed: int = Field(
        0, description="Seed of the evaluation draws: in eval mode, example i's timesteps "
        "and noise come from a generator seeded by (eval_seed, i), so every model is scored "
        "on the same draws.")
    feature_timestep: int | None = Field(
        None, ge=0, description="Timestep at which features() reads the UNet's mid block "
        "(default: T // 10).")


class DiffusersUNetAdapter(ModelAdapter):
    """A diffusers ``UNet2DConditionModel`` with its noise scheduler; class or prompt conditions.

    **Model.** ``adapter.model`` is a module with submodules ``unet``, and ``class_embedding``
    (class conditions) or ``text_encoder`` (prompt conditions), and ``vae`` for a latent
    diffusion model; parameter names carry those prefixes. Class conditions enter through
    cross-attention, like prompts: each class has ``class_tokens`` learned tokens used as
    the UNet's ``encoder_hidden_states``, so methods that edit cross-attention apply to both.
    Prompts are tokenised (padded to the tokenizer's ``model_max_length``) and encoded by
    the CLIP text encoder, as ``StableDiffusionPipeline`` does. A loaded
    ``StableDiffusionPipeline`` (Rombach et al. 2022) works in the VAE's latent space:
    images are encoded to the posterior mean, scaled by the VAE's ``scaling_factor`` (after
    subtracting ``shift_factor`` when set), and the loss is on latents. The VAE, and a
    text encoder unless ``train_text_encoder``, are frozen.

    **Batches.** Items ``{"image": float [C, H, W] in [-1, 1], "class_label": int}`` or
    ``{"image", "prompt": str}`` (or ``(image, class_label)`` tuples); ``prepare_batch``
    gives ``{"x0", "class_labels" | "input_ids" (+ "attention_mask")}``, ``x0`` being the
    images or their latents.

    **Loss** (Ho et al. 2020): for a timestep ``t`` uniform in ``[0, T)`` and noise
    ``eps ~ N(0, I)``, ``x_t = scheduler.add_noise(x0, eps, t)`` and the example's loss is
    the mean over its pixels (or latents) of ``(unet(x_t, t, c) - target)^2``, the target
    being ``eps``, the velocity or ``x0`` as the scheduler's ``prediction_type`` says;
    ``noise_draws`` draws are averaged. Training uses a ``DDPMScheduler`` built from the
    model's scheduler config (the forward process only depends on the betas).

    **Where the draws come from.** Drawn once per batch and stored in it (``timesteps``
    ``[K, B]``, ``noise`` ``[K, B, ...]``), so every model that scores the same batch, a
    frozen reference say, uses the same ``t`` and ``eps``:

    - in train mode (``model.train()``, as in the training loop): fresh draws from the
      global torch RNG (on the CPU, whatever the device), which the run seeds and each
      checkpoint saves, so training is reproducible and a resumed run continues with the
      same draws;
    - in eval mode: example ``i`` (``batch["index"]``, its dataset index; without it, its
      position in the batch) gets its draws from a generator seeded by
      ``(eval_seed, i)``, so the original and the unlearned model are scored on the same
      ``t`` and ``eps`` for every example.

    **Features.** The UNet mid-block output, mean-pooled over space, at the fixed timestep
    ``feature_timestep`` with keyed noise (as in eval mode): one vector per example,
    comparable across examples and models.

    **Parameter groups.** ``all`` (what the loss trains: UNet, class tokens, a trained
    text encoder), ``unet``, ``cross_attention`` (every parameter of the UNet's ``attn2``
    modules: ``to_q``, ``to_k``, ``to_v``, ``to_out``), ``self_attention`` (``attn1``),
    ``non_cross_attention`` (the UNet minus ``attn2``), and ``class_embedding``,
    ``text_encoder`` and ``vae`` when present.

    **Saving** writes the diffusers layout with ``save_pretrained`` (safetensors):
    ``unet/``, ``scheduler/``, ``text_encoder/`` and ``tokenizer/`` (prompts), the class
    tokens in ``model.safetensors``, and ``adapter.json``; a latent model is saved as a
    whole ``StableDiffusionPipeline`` (``model_index.json``, ``vae/``...), so diffusers loads
    the unlearned model directly.

    **Re-initialising** (``reset_parameters``, retraining from scratch) re-creates the
    UNet from its config and the class tokens (and a trained text encoder) with the torch
    RNG, exactly as a fresh build; the frozen pretrained parts (VAE, a frozen text
    encoder) are not what the denoising loss trains and keep their weights.
    """

    name = "diffusers_unet"
    modalities = ("diffusion",)
    needs = frozenset()
    Params = DiffusersUNetParams
    paper = Paper(
        title="Denoising Diffusion Probabilistic Models",
        authors="Jonathan Ho, Ajay Jain, Pieter Abbeel",
        year=2020,
        url="https://arxiv.org/abs/2006.11239",
        venue="NeurIPS",
    )
    #: Latent diffusion (the Stable Diffusion pipelines this adapter loads).
    latent_paper = Paper(
        title="High-Resolution Image Synthesis with Latent Diffusion Models",
        authors="Robin Rombach, Andreas Blattmann, Dominik Lorenz, Patrick Esser, "
        "Bjoern Ommer",
        year=2022,
        url="https://arxiv.org/abs/2112.10752",
        venue="CVPR",
    )

    accepts_hub_ids = True  # ``path`` may be a hub id (loaded when the hub is reachable)

    def __init__(self, model: torch.nn.Module, params: DiffusersUNetParams | None = None, *,
                 scheduler: Any, tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(model, params, **kwargs)
        self.scheduler = scheduler
        self.tokenizer = tokenizer
        self._check_model()
        self.noise_scheduler = self._noise_scheduler()
        self._set_trainable()

    # -- what the model is ---------------------------------------------------------------
    @property
    def condition(self) -> str:
        """``"class"`` or ``"prompt"``."""
        return "class" if self.model.class_embedding is not None else "prompt"

    @property
    def latent(self) -> bool:
        """Whether the UNet works in a VAE's latent space."""
        return self.model.vae is not None

    @property
    def num_classes(self) -> int | None:
        emb = self.model.class_embedding
        return emb.num_classes if emb is not None else None

    @property
    def num_train_timesteps(self) -> int:
        return int(self.noise_scheduler.config.num_train_timesteps)

    @property
    def prediction_type(self) -> str:
        return str(self.noise_scheduler.config.prediction_type)

    @property
    def trains_text_encoder(self) -> bool:
        return self.model.text_encoder is not None and bool(self.params.train_text_encoder)

    def _check_model(self) -> None:
        from diffusers import UNet2DConditionModel

        unet = getattr(self.model, "unet", None)
        if not isinstance(unet, UNet2DConditionModel):
            raise IncompatibleComponentError(
                f"model '{self.name}' wraps a diffusers UNet2DConditionModel, got "
                f"{type(unet).__name__}")
        cfg = unet.config
        extra = [k for k in ("class_embed_type", "num_class_embeds", "addition_embed_type")
                 if getattr(cfg, k, None) is not None]
        if extra:
            raise IncompatibleComponentError(
                f"this UNet needs extra conditioning ({', '.join(extra)} in its config: class "
                "labels or added_cond_kwargs), which model 'diffusers_unet' does not provide; "
                "it supports UNets conditioned through encoder_hidden_states only")
        has_class = self.model.class_embedding is not None
        has_text = self.model.text_encoder is not None
        if has_class == has_text:
            raise IncompatibleComponentError(
                "model 'diffusers_unet' needs exactly one condition: class tokens or a text "
                f"encoder (got {'both' if has_class else 'neither'})")
        if has_text and self.tokenizer is None:
            raise IncompatibleComponentError(
                "a prompt-conditioned model needs its tokenizer (the tokenizer/ folder)")
        wanted = self.params.condition
        if wanted is not None and wanted != self.condition:
            raise IncompatibleComponentError(
                f"model.condition is '{wanted}' but the model is conditioned on "
                f"{'classes' if has_class else 'prompts'}; drop model.condition or load "
                "another model")
        dim = int(cfg.cross_attention_dim)
        width = (self.model.class_embedding.weight.shape[-1] if has_class
                 else int(self.model.text_encoder.config.hidden_size))
        if width != dim:
            raise IncompatibleComponentError(
                f"the condition tokens are {width} wide but the UNet's cross_attention_dim "
                f"is {dim}")

    def _noise_scheduler(self) -> Any:
        from diffusers import DDPMScheduler

        overrides = {}
        if self.params.prediction_type is not None:
            overrides["prediction_type"] = self.params.prediction_type
        noise = DDPMScheduler.from_config(self.scheduler.config, **overrides)
        kind = noise.config.prediction_type
        if kind not in PREDICTION_TYPES:
            raise IncompatibleComponentError(
                f"the scheduler's prediction_type '{kind}' is not supported by the denoising "
                f"loss; supported: {', '.join(PREDICTION_TYPES)} (set model.prediction_type "
                "to override it)")
        return noise

    def _set_trainable(self) -> None:
        if self.model.vae is not None:
            self.model.vae.requires_grad_(False)
        if self.model.text_encoder is not None:
            self.model.text_encoder.requires_grad_(self.trains_text_encoder)

    def _facts(self) -> dict[str, Any]:
        """Params describing the wrapped model as it is (written to adapter.json)."""
        cfg = self.model.unet.config
        facts: dict[str, Any] = {"condition": self.condition,
                                 "cross_attention_dim": int(cfg.cross_attention_dim),
                                 "train_text_encoder": self.trains_text_encoder}
        if self.condition == "class":
            facts["num_classes"] = self.num_classes
            facts["class_tokens"] = int(self.model.class_embedding.weight.shape[1])
        if not self.latent:
            facts["channels"] = int(cfg.in_channels)
            size = cfg.sample_size
            facts["sample_size"] = int(size if isinstance(size, int) else size[0])
        return facts

    # -- construction and persistence -----------------------------------------------------
    @classmethod
    def build(cls, params: DiffusersUNetParams, info: DataInfo | None = None
              ) -> DiffusersUNetAdapter:
        """A fresh model from the architecture fields (uses the torch RNG)."""
        from diffusers import DDPMScheduler, UNet2DConditionModel

        from erasus_diffusion._modules import ClassTokens, DiffusionModel

        condition = params.condition or "class"
        shape = tuple(info.input_shape) if info is not None and info.input_shape else None
        channels = params.channels or (int(shape[0]) if shape else 1)
        size = params.sample_size or (int(shape[-1]) if shape else 8)
        levels = len(params.block_out_channels)
        down = params.down_block_types or (
            ["CrossAttnDownBlock2D"] if levels == 1
            else ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * (levels - 1))
        up = params.up_block_types or [d.replace("Down", "Up") for d in reversed(down)]
        bad = [c for c in params.block_out_channels if c % params.norm_num_groups]
        if bad or len(down) != levels or len(up) != levels:
            raise IncompatibleComponentError(
                f"model '{cls.name}': block_out_channels {params.block_out_channels} must each "
                f"be divisible by norm_num_groups ({params.norm_num_groups}), and "
                "down_block_types / up_block_types must have one entry per level")
        dim = params.cross_attention_dim
        if dim % params.attention_head_dim:
            raise IncompatibleComponentError(
                f"model '{cls.name}': cross_attention_dim ({dim}) must be a multiple of "
                f"attention_head_dim ({params.attention_head_dim})")
        num_classes = None
        if condition == "class":
            num_classes = params.num_classes or (info.num_classes if info else None)
            if not num_classes:
                raise IncompatibleComponentError(
                    f"model '{cls.name}' with condition 'class' needs num_classes; set "
                    "model.num_classes or use a data set that gives it")
        unet = UNet2DConditionModel(
            sample_size=size, in_channels=channels, out_channels=channels,
            block_out_channels=tuple(params.block_out_channels),
            down_block_types=tuple(down), up_block_types=tuple(up),
            layers_per_block=params.layers_per_block, norm_num_groups=params.norm_num_groups,
            cross_attention_dim=dim, attention_head_dim=params.attention_head_dim)
        scheduler = DDPMScheduler(num_train_timesteps=params.num_train_timesteps,
                                  beta_schedule=params.beta_schedule,
                                  prediction_type=params.prediction_type or "epsilon")
        tokenizer = None
        if condition == "class":
            model = DiffusionModel(unet, class_embedding=ClassTokens(
                int(num_classes), params.class_tokens, dim))
        else:
            from erasus_diffusion.tiny import tiny_clip_text_encoder, tiny_clip_tokenizer

            tokenizer = tiny_clip_tokenizer(model_max_length=params.max_prompt_length)
            text_encoder = tiny_clip_text_encoder(
                tokenizer, hidden_size=dim, layers=params.text_layers,
                heads=dim // params.attention_head_dim)
            model = DiffusionModel(unet, text_encoder=text_encoder)
        if params.train_text_encoder is None:
            params = params.model_copy(update={"train_text_encoder": condition == "prompt"})
        adapter = cls(model, params, scheduler=scheduler, tokenizer=tokenizer)
        adapter.params = params.model_copy(update=adapter._facts())
        return adapter

    @classmethod
    def load(cls, path: str | Path, params: DiffusersUNetParams | None = None,
             info: DataInfo | None = None) -> DiffusersUNetAdapter:
        """Load a directory saved by :meth:`save`, a StableDiffusionPipeline directory, or a
        hub id (safetensors only)."""
        root = Path(path)
        meta: dict[str, Any] = {}
        if root.is_dir() and (root / ADAPTER_FILE).is_file():
            meta = json.loads((root / ADAPTER_FILE).read_text())
        saved = meta.get("params", {})
        if params is None:
            params = cls.Params(**saved)
        if params.train_text_encoder is None:  # as saved; a pretrained one stays frozen
            params = params.model_copy(
                update={"train_text_encoder": bool(saved.get("train_text_encoder"))})
        if root.is_dir() and not (root / "model_index.json").is_file():
            return cls._assemble(cls._load_components(root), params)
        from diffusers import DiffusionPipeline

        try:
            pipe = DiffusionPipeline.from_pretrained(str(path), use_safetensors=True,
                                                     safety_checker=None)
        except Exception as exc:
            if root.is_dir():
                raise
            raise FileNotFoundError(
                f"'{path}' is not a local directory, and loading it as a hub id failed "
                f"({type(exc).__name__}: {exc})") from exc
        return cls.from_pipeline(pipe, params)

    @classmethod
    def wrap(cls, obj: Any, params: DiffusersUNetParams | None = None
             ) -> DiffusersUNetAdapter:
        """Wrap a loaded Stable Diffusion pipeline the user holds (see :meth:`from_pipeline`).

        A UNet alone is refused: the denoising loss needs its noise scheduler and condition.
        """
        if not hasattr(obj, "components"):
            raise IncompatibleComponentError(
                "model 'diffusers_unet' wraps a diffusers pipeline (unet, scheduler, "
                "text_encoder, tokenizer, vae); a UNet alone has no noise scheduler or "
                "condition encoder")
        return cls.from_pipeline(obj, params)

    @classmethod
    def from_pipeline(cls, pipeline: Any, params: DiffusersUNetParams | None = None
                      ) -> DiffusersUNetAdapter:
        """Wrap the parts of a loaded diffusers Stable Diffusion pipeline (they are shared,
        not copied): unet, scheduler, text_encoder, tokenizer and vae."""
        params = params or cls.Params()
        if params.train_text_encoder is None:
            params = params.model_copy(update={"train_text_encoder": False})
        comps = getattr(pipeline, "components", {})
        missing = [k for k in ("unet", "scheduler", "text_encoder", "tokenizer")
                   if comps.get(k) is None]
        if missing:
            raise IncompatibleComponentError(
                f"the pipeline ({type(pipeline).__name__}) has no {', '.join(missing)}; "
                "model 'diffusers_unet' takes Stable Diffusion pipelines (unet, scheduler, "
                "text_encoder, tokenizer, vae)")
        return cls._assemble({k: comps.get(k) for k in ("unet", "scheduler", "text_encoder",
                                                        "tokenizer", "vae")}, params)

    @classmethod
    def _assemble(cls, parts: dict[str, Any], params: DiffusersUNetParams
                  ) -> DiffusersUNetAdapter:
        from erasus_diffusion._modules import DiffusionModel

        parts = dict(parts)
        scheduler = parts.pop("scheduler")
        tokenizer = parts.pop("tokenizer", None)
        adapter = cls(DiffusionModel(**parts), params, scheduler=scheduler,
                      tokenizer=tokenizer)
        adapter.params = params.model_copy(update=adapter._facts())
        adapter.model.eval()
        return adapter

    @staticmethod
    def _load_components(root: Path) -> dict[str, Any]:
        import diffusers
        from diffusers import DDPMScheduler, UNet2DConditionModel

        from erasus_diffusion._modules import ClassTokens

        if not (root / "unet").is_dir():
            raise FileNotFoundError(
                f"{root} holds no unet/ folder (nor model_index.json): not a model saved by "
                "'diffusers_unet' nor a diffusers pipeline")
        parts: dict[str, Any] = {"unet": UNet2DConditionModel.from_pretrained(
            root, subfolder="unet", use_safetensors=True)}
        sched_cfg = root / "scheduler" / "scheduler_config.json"
        if sched_cfg.is_file():
            name = json.loads(sched_cfg.read_text()).get("_class_name", "DDPMScheduler")
            sched_cls = getattr(diffusers, name, DDPMScheduler)
            parts["scheduler"] = sched_cls.from_pretrained(root, subfolder="scheduler")
        else:
            parts["scheduler"] = DDPMScheduler()
        if (root / "text_encoder").is_dir():
            from transformers import AutoTokenizer, CLIPTextModel

            parts["text_encoder"] = CLIPTextModel.from_pretrained(
                root / "text_encoder", use_safetensors=True)
            parts["tokenizer"] = AutoTokenizer.from_pretrained(root / "tokenizer")
        if (root / "vae").is_dir():
            from diffusers import AutoencoderKL

            parts["vae"] = AutoencoderKL.from_pretrained(root, subfolder="vae",
                                                         use_safetensors=True)
        weights = root / WEIGHTS_FILE
        if weights.is_file():
            from safetensors.torch import load_file

            state = load_file(str(weights), device="cpu")
            tokens = state.get("class_embedding.weight")
            if tokens is not None:
                parts["class_embedding"] = ClassTokens.from_weight(tokens)
        return parts

    def save(self, directory: str | Path) -> None:
        """Write the diffusers layout (``save_pretrained``, safetensors) and adapter.json."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        m = self.model
        if m.vae is not None:
            from diffusers import StableDiffusionPipeline

            pipe = StableDiffusionPipeline(
                vae=m.vae, text_encoder=m.text_encoder, tokenizer=self.tokenizer, unet=m.unet,
                scheduler=self.scheduler, safety_checker=None, feature_extractor=None,
                requires_safety_checker=False)
            pipe.save_pretrained(directory, safe_serialization=True)
        else:
            m.unet.save_pretrained(directory / "unet", safe_serialization=True)
            self.scheduler.save_pretrained(directory / "scheduler")
            if m.text_encoder is not None:
                m.text_encoder.save_pretrained(directory / "text_encoder")
                self.tokenizer.save_pretrained(directory / "tokenizer")
        if m.class_embedding is not None:
            from safetensors.torch import save_file

            save_file({"class_embedding.weight":
                       m.class_embedding.weight.detach().cpu().contiguous()},
                      str(directory / WEIGHTS_FILE))
        params = self.params.model_dump(mode="json")
        params.pop("path", None)
        (directory / ADAPTER_FILE).write_text(
            json.dumps({"adapter": self.name, "params": params}, indent=2) + "\n")

    def reset_parameters(self) -> None:
        """Re-create every trained weight as a fresh build would (uses the torch RNG)."""
        m = self.model
        fresh = type(m.unet).from_config(m.unet.config)
        m.unet.load_state_dict(fresh.state_dict())
        del fresh
        if m.class_embedding is not None:
            m.class_embedding.reset_parameters()
        if self.trains_text_encoder:
            te = m.text_encoder
            te.load_state_dict(type(te)(te.config).state_dict())

    # -- batches ------------------------------------------------------------------------
    def prepare_batch(self, batch: Any) -> dict[str, Any]:
        import torch

        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            images, cond = batch
            batch = {"image": images, ("class_label" if isinstance(cond, torch.Tensor)
                                       else "prompt"): cond}
        if not isinstance(batch, dict):
            raise IncompatibleComponentError(
                f"model '{self.name}' takes dict batches ({{'image', 'class_label'}} or "
                f"{{'image', 'prompt'}}) or (image, class_label) pairs; got "
                f"{type(batch).__name__}")
        key = next((k for k in _IMAGE_KEYS if k in batch), None)
        if key is None:
            raise IncompatibleComponentError(
                f"model '{self.name}': the batch has no image (keys {', '.join(_IMAGE_KEYS)}); "
                f"got keys {sorted(batch)}")
        device = self.device
        images = torch.as_tensor(batch[key]).to(device=device, dtype=torch.float32)
        if images.ndim != 4:
            raise IncompatibleComponentError(
                f"model '{self.name}': images must be a [B, C, H, W] batch, got shape "
                f"{tuple(images.shape)}")
        out: dict[str, Any] = {"x0": self._to_x0(images)}
        if self.condition == "class":
            out["class_labels"] = self._class_labels(batch, device)
        else:
            out.update(self._tokens(batch, device))
        if "index" in batch:
            out["index"] = torch.as_tensor(batch["index"]).to(device)
        return out

    def _to_x0(self, images: torch.Tensor) -> torch.Tensor:
        import torch

        vae = self.model.vae
        expected = int(vae.config.in_channels if vae is not None
                       else self.model.unet.config.in_channels)
        if images.shape[1] != expected:
            raise IncompatibleComponentError(
                f"model '{self.name}' takes {expected}-channel images, got "
                f"{images.shape[1]} channels")
        if vae is None:
            return images
        with torch.no_grad():
            latents = vae.encode(images).latent_dist.mean
            shift = getattr(vae.config, "shift_factor", None)
            if shift:
                latents = latents - shift
            return latents * vae.config.scaling_factor

    def _class_labels(self, batch: dict[str, Any], device: Any) -> torch.Tensor:
        import torch

        key = next((k for k in _CLASS_KEYS if k in batch), None)
        if key is None:
            raise IncompatibleComponentError(
                f"model '{self.name}' is class-conditional: the batch needs class labels "
                f"(keys {', '.join(_CLASS_KEYS)}); got keys {sorted(batch)}")
        labels = torch.as_tensor(batch[key]).reshape(-1).long()
        n = self.num_classes
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n):
            raise IncompatibleComponentError(
                f"model '{self.name}' has {n} classes; got labels outside [0, {n}): "
                f"{sorted(set(labels.tolist()))}")
        return labels.to(device)

    def _tokens(self, batch: dict[str, Any], device: Any) -> dict[str, Any]:
        key = next((k for k in _PROMPT_KEYS if k in batch), None)
        if key is None:
            raise IncompatibleComponentError(
                f"model '{self.name}' is prompt-conditional: the batch needs prompts (keys "
                f"{', '.join(_PROMPT_KEYS)}); got keys {sorted(batch)}")
        prompts = batch[key]
        prompts = [prompts] if isinstance(prompts, str) else [str(p) for p in prompts]
        tok = self.tokenizer
        enc = tok(prompts, padding="max_length", max_length=tok.model_max_length,
                  truncation=True, return_tensors="pt")
        out = {"input_ids": enc.input_ids.to(device)}
        if getattr(self.model.text_encoder.config, "use_attention_mask", False):
            out["attention_mask"] = enc.attention_mask.to(device)
        return out

    def encoder_hidden_states(self, batch: dict[str, Any]) -> torch.Tensor:
        """The condition tokens ``[B, L, D]`` the UNet cross-attends to."""
        import torch

        m = self.model
        if m.class_embedding is not None:
            return m.class_embedding(batch["class_labels"])
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trains_text_encoder):
            return m.text_encoder(batch["input_ids"],
                                  attention_mask=batch.get("attention_mask"))[0]

    # -- the draws ----------------------------------------------------------------------
    def draws(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's ``(timesteps [K, B], noise [K, B, ...])``, drawn on first use and
        stored in the batch (see the class docstring for where they come from)."""
        if "timesteps" in batch and "noise" in batch:
            return batch["timesteps"], batch["noise"]
        import torch

        x0 = batch["x0"]
        k, b, shape = self.params.noise_draws, int(x0.shape[0]), tuple(x0.shape[1:])
        if self.model.training:
            timesteps = torch.randint(0, self.num_train_timesteps, (k, b))
            noise = torch.randn((k, b, *shape))
        else:
            timesteps, noise = self._keyed(batch, k, shape, stream=0)
        batch["timesteps"] = timesteps.to(x0.device)
        batch["noise"] = noise.to(device=x0.device, dtype=x0.dtype)
        return batch["timesteps"], batch["noise"]

    def _keys(self, batch: dict[str, Any]) -> list[int]:
        index = batch.get("index")
        if index is None:
            return list(range(int(batch["x0"].shape[0])))
        return [int(i) for i in index.reshape(-1).tolist()]

    def _keyed(self, batch: dict[str, Any], k: int, shape: tuple[int, ...], *, stream: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draws of each example from a generator seeded by (eval_seed, stream, its key)."""
        import torch

        ts, noise = [], []
        for key in self._keys(batch):
            g = torch.Generator().manual_seed(_mix(self.params.eval_seed, stream, key))
            ts.append(torch.randint(0, self.num_train_timesteps, (k,), generator=g))
            noise.append(torch.randn((k, *shape), generator=g))
        return torch.stack(ts, dim=1), torch.stack(noise, dim=1)

    # -- losses and features ---------------------------------------------------------------
    def _target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        kind = self.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "v_prediction":
            return self.noise_scheduler.get_velocity(x0, noise, t)
        return x0

    def per_example_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        timesteps, noise = self.draws(batch)
        x0 = batch["x0"]
        k, b = timesteps.shape
        x0k = x0.unsqueeze(0).expand(k, *x0.shape).reshape(k * b, *x0.shape[1:])
        eps = noise.reshape(k * b, *x0.shape[1:])
        t = timesteps.reshape(k * b)
        states = self.encoder_hidden_states(batch)
        if k > 1:
            states = states.repeat(k, 1, 1)
        x_t = self.noise_scheduler.add_noise(x0k, eps, t)
        pred = self.model.unet(x_t, t, encoder_hidden_states=states).sample
        err = (pred.float() - self._target(x0k, eps, t).float()).pow(2).flatten(1).mean(1)
        return err.view(k, b).mean(0)

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        import torch

        unet = self.model.unet
        if unet.mid_block is None:
            raise IncompatibleComponentError(
                f"model '{self.name}': this UNet has no mid block to read features from")
        x0 = batch["x0"]
        step = self.params.feature_timestep
        step = self.num_train_timesteps // 10 if step is None else step
        if step >= self.num_train_timesteps:
            raise IncompatibleComponentError(
                f"model.feature_timestep ({step}) must be below T = {self.num_train_timesteps}")
        _, noise = self._keyed(batch, 1, tuple(x0.shape[1:]), stream=_FEATURE_STREAM)
        noise = noise[0].to(device=x0.device, dtype=x0.dtype)
        t = torch.full((x0.shape[0],), step, dtype=torch.long, device=x0.device)
        captured: list[torch.Tensor] = []
        hook = unet.mid_block.register_forward_hook(
            lambda _m, _i, out: captured.append(out[0] if isinstance(out, tuple) else out))
        try:
            unet(self.noise_scheduler.add_noise(x0, noise, t), t,
                 encoder_hidden_states=self.encoder_hidden_states(batch))
        finally:
            hook.remove()
        return captured[0].float().mean(dim=(2, 3))

    def outputs(self, batch: dict[str, Any], *, features: bool = False
                ) -> dict[str, torch.Tensor]:
        out = {"loss": self.per_example_loss(batch)}
        if features:
            out["features"] = self.features(batch)
        return out

    def parameter_groups(self) -> dict[str, list[str]]:
        m = self.model
        names = [n for n, _ in m.named_parameters()]

        def under(prefix: str) -> list[str]:
            return [n for n in names if n.startswith(prefix + ".")]

        def attention(kind: str) -> list[str]:
            members = []
            for mname, module in m.unet.named_modules():
                if mname.rsplit(".", 1)[-1] == kind:
                    members += [f"unet.{mname}.{n}" for n, _ in module.named_parameters()]
            return members

        unet = under("unet")
        cross = attention("attn2")
        cross_set = set(cross)
        groups = {
            "all": unet + under("class_embedding")
            + (under("text_encoder") if self.trains_text_encoder else []),
            "unet": unet,
            "cross_attention": cross,
            "self_attention": attention("attn1"),
            "non_cross_attention": [n for n in unet if n not in cross_set],
        }
        for part in ("class_embedding", "text_encoder", "vae"):
            if getattr(m, part) is not None:
                groups[part] = under(part)
        return groups

    # -- testing ------------------------------------------------------------------------
    @classmethod
    def tiny_problem(cls, seed: int = 0) -> TinyProblem:
        from erasus_diffusion.tiny import tiny_diffusion_problem

        return tiny_diffusion_problem(seed)


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps), so nearby keys give unrelated streams."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & _MASK64)) & _MASK64
        h = (h + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h & ((1 << 63) - 1)
