"""CLIP through open_clip: a model from an open_clip config name or a local checkpoint."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erasus.adapters import ADAPTER_FILE, WEIGHTS_FILE, TinyProblem
from erasus.errors import IncompatibleComponentError
from pydantic import Field

from erasus_vlm._clip import CLIP_PAPER, ClipAdapter, ClipParams, check_saved_fields, require

if TYPE_CHECKING:
    import torch
    from erasus.data import DataInfo

__all__ = ["OPEN_CLIP_CONFIG_FILE", "TINY_CONFIG", "TINY_NAME", "OpenClipAdapter",
           "OpenClipParams", "register_model_config"]

#: The file open_clip's ``local-dir:`` / ``hf-hub:`` loaders read the architecture from.
OPEN_CLIP_CONFIG_FILE = "open_clip_config.json"
#: open_clip's own name for the weights of a checkpoint directory (read as well).
_OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"

#: The name under which the adapter registers :data:`TINY_CONFIG` in open_clip's table.
TINY_NAME = "erasus-tiny-clip"
#: A tiny ViT CLIP (24x24 images in 6x6 patches, 2 + 2 layers of width 32, 16 text tokens,
#: the real CLIP BPE vocabulary): forward and backward take milliseconds on a CPU.
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 24, "patch_size": 6, "width": 32, "layers": 2,
                   "head_width": 16, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 2, "mlp_ratio": 2.0},
}


class OpenClipParams(ClipParams):
    """Parameters of the open_clip adapter."""

    model_name: str = Field(
        TINY_NAME, description="open_clip model config name: a built-in one (ViT-B-32, "
        "RN50, ... see open_clip.list_models()), the name to register `config` under, "
        f"or '{TINY_NAME}' (a tiny ViT CLIP for tests and examples). A fresh model is "
        "randomly initialised; pretrained weights come from model.path.")
    config: dict[str, Any] | None = Field(
        None, description="A custom open_clip model config ({embed_dim, vision_cfg, text_cfg, "
        "...}, as in open_clip's configs/*.json), registered in open_clip's model "
        "config table under `model_name` when the model is built.")


def register_model_config(name: str, config: dict[str, Any]) -> str:
    """Register ``config`` in open_clip's model config table under ``name``; return the name.

    Uses open_clip's public ``add_model_config`` (from a temporary JSON file). A name that
    is already registered with the same config is reused; another config under a taken
    name is an error.
    """
    import tempfile

    open_clip = require("open_clip")
    if not name or "/" in name or ":" in name:
        raise IncompatibleComponentError(
            f"open_clip model config name {name!r} must be non-empty, without '/' or ':'")
    if not all(k in config for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise IncompatibleComponentError(
            f"open_clip model config '{name}' needs embed_dim, vision_cfg and text_cfg; got "
            f"keys {sorted(config)}")
    current = open_clip.get_model_config(name)
    if current is not None:
        if _canonical(current) == _canonical(config):
            return name
        raise IncompatibleComponentError(
            f"open_clip already has a model config named '{name}' that differs from "
            "model.config; give the custom config another model_name")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.json"
        path.write_text(json.dumps(config))
        open_clip.add_model_config(path)
    if open_clip.get_model_config(name) is None:  # pragma: no cover - open_clip changed
        raise IncompatibleComponentError(f"open_clip did not register model config '{name}'")
    return name


def _canonical(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def _config_of(params: OpenClipParams) -> tuple[dict[str, Any], bool]:
    """The model config the params name, and whether it is custom (not built in)."""
    open_clip = require("open_clip")
    if params.config is not None:
        return dict(params.config), True
    if params.model_name == TINY_NAME:
        return json.loads(json.dumps(TINY_CONFIG)), True
    config = open_clip.get_model_config(params.model_name)
    if config is None:
        from erasus.errors import did_you_mean

        raise IncompatibleComponentError(
            f"open_clip has no model config named '{params.model_name}'"
            f"{did_you_mean(params.model_name, open_clip.list_models())}; pass config "
            "to register a custom one")
    return config, False


class _RandomInitIsIntended:
    """Drops open_clip's warning that a model it built has no pretrained weights."""

    def filter(self, record: Any) -> bool:
        return "initialized randomly" not in record.getMessage()


def _create(name: str) -> torch.nn.Module:
    """A randomly initialised open_clip model of a registered config (nothing downloaded)."""
    import logging

    open_clip = require("open_clip")
    root = logging.getLogger()
    quiet = _RandomInitIsIntended()
    root.addFilter(quiet)
    try:
        model = open_clip.create_model(name, pretrained=None, pretrained_image=False,
                                       pretrained_text=False, device="cpu")
    finally:
        root.removeFilter(quiet)
    if getattr(model, "logit_bias", None) is not None:
        raise IncompatibleComponentError(
            f"open_clip model '{name}' has a logit bias (SigLIP's sigmoid loss); this adapter "
            "computes CLIP's softmax contrastive loss, so it does not take SigLIP models")
    return model


class OpenClipAdapter(ClipAdapter):
    """CLIP (Radford et al. 2021) through open_clip: image-text pairs, per-pair contrastive loss.

    Built from an open_clip model config name (built-in, the tiny ``erasus-tiny-clip``, or a
    custom ``config`` registered in open_clip's config table) with a fresh random
    initialisation, or loaded from a local checkpoint directory: ``model.safetensors`` (or
    open_clip's ``open_clip_model.safetensors``) and ``open_clip_config.json``
    (``{"model_cfg": ...}``, the layout of open_clip's ``local-dir:`` and ``hf-hub:``
    checkpoints). Weights are read with safetensors only; ``save`` writes that layout.
    Text is tokenised with ``open_clip.get_tokenizer`` (the real CLIP BPE tokenizer, which
    ships with open_clip).

    The per-example loss is CLIP's symmetric contrastive (InfoNCE) loss of each pair
    against the other pairs of its batch (see :meth:`per_example_loss`): an example's loss
    depends on the rest of its batch, and a batch of one pair is an error. Features are the
    L2-normalised image embeddings; ``outputs(features=True)`` adds ``text_features``.
    Parameter groups: ``all``, ``vision`` (the image tower without its projection),
    ``text`` (the text tower without its projection), ``projection`` (the two projections
    into the joint space) and ``logit_scale`` (the learned temperature).

    open_clip: Ilharco et al. 2021, OpenCLIP (https://doi.org/10.5281/zenodo.5143773);
    Cherti et al. 2023, "Reproducible scaling laws for contrastive language-image
    learning", CVPR (https://arxiv.org/abs/2212.07143).
    """

    name = "open_clip"
    Params = OpenClipParams
    paper = CLIP_PAPER

    def __init__(self, model: torch.nn.Module, params: OpenClipParams | None = None, *,
                 tokenizer: Any = None, model_cfg: dict[str, Any] | None = None,
                 config_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, params, tokenizer=tokenizer, **kwargs)
        self.model_cfg = model_cfg
        self.config_name = config_name

    # -- construction and persistence ------------------------------------------------------
    @classmethod
    def _from_config(cls, params: OpenClipParams, config: dict[str, Any], custom: bool,
                     info: DataInfo | None) -> OpenClipAdapter:
        open_clip = require("open_clip")
        name = register_model_config(params.model_name, config) if custom \
            else params.model_name
        model = _create(name)
        adapter = cls(model, params, tokenizer=open_clip.get_tokenizer(name), model_cfg=config,
                      config_name=name)
        adapter._check_data(info)
        return adapter

    @classmethod
    def build(cls, params: OpenClipParams, info: DataInfo | None = None) -> OpenClipAdapter:
        """A freshly initialised model of ``params.model_name`` / ``params.config``."""
        config, custom = _config_of(params)
        return cls._from_config(params, config, custom, info)

    @classmethod
    def load(cls, path: str | Path, params: OpenClipParams | None = None,
             info: DataInfo | None = None) -> OpenClipAdapter:
        """Load a checkpoint directory (or, where the hub is reachable, ``hf-hub:org/repo``).

        The architecture is the directory's ``open_clip_config.json``; params that name
        another architecture are an error.
        """
        from safetensors.torch import load_file

        if str(path).startswith("hf-hub:"):
            return cls._from_hub(str(path), params, info)
        path = Path(path)
        config_file = path / OPEN_CLIP_CONFIG_FILE
        if not config_file.is_file():
            raise FileNotFoundError(
                f"no {OPEN_CLIP_CONFIG_FILE} in model directory {path}: an open_clip "
                "checkpoint directory holds the model config and safetensors weights")
        weights = next((path / f for f in (WEIGHTS_FILE, _OPEN_CLIP_WEIGHTS)
                        if (path / f).is_file()), None)
        if weights is None:
            raise FileNotFoundError(
                f"no {WEIGHTS_FILE} or {_OPEN_CLIP_WEIGHTS} in model directory {path} "
                "(weights are read from safetensors only)")
        saved = json.loads(config_file.read_text())
        config = saved.get("model_cfg", saved)
        meta_file = path / ADAPTER_FILE
        meta = json.loads(meta_file.read_text()).get("params", {}) if meta_file.is_file() \
            else {}
        if params is None:
            params = OpenClipParams(**meta)
        saved_name = meta.get("model_name") or f"local-{_digest(config)}"
        check_saved_fields({"model_name": saved_name, "config": config}, params)
        name = saved_name
        registered = require("open_clip").get_model_config(name)
        if registered is not None and _canonical(registered) != _canonical(config):
            name = f"{name}-{_digest(config)}"  # a changed built-in: register it apart
        params = params.model_copy(update={"model_name": name, "config": config})
        adapter = cls._from_config(params, config, True, info)
        state = load_file(str(weights), device="cpu")
        adapter.model.load_state_dict(state)
        return adapter

    @classmethod
    def _from_hub(cls, hub_id: str, params: OpenClipParams | None,
                  info: DataInfo | None) -> OpenClipAdapter:
        open_clip = require("open_clip")
        params = params or OpenClipParams()
        config = open_clip.get_model_config(hub_id)
        # registered under a local name too, so that reset_parameters builds a fresh model
        # of this config instead of downloading the weights again
        name = register_model_config(f"hub-{_digest(config)}", config)
        model = open_clip.create_model(hub_id, weights_only=True)
        adapter = cls(model, params.model_copy(update={"model_name": name, "config": config}),
                      tokenizer=open_clip.get_tokenizer(hub_id), model_cfg=config,
                      config_name=name)
        adapter._check_data(info)
        return adapter

    def save(self, directory: str | Path) -> None:
        """``model.safetensors``, ``open_clip_config.json`` and ``adapter.json``."""
        open_clip = require("open_clip")
        super().save(directory)
        preprocess = open_clip.get_model_preprocess_cfg(self.model)
        (Path(directory) / OPEN_CLIP_CONFIG_FILE).write_text(json.dumps(
            {"model_cfg": self.model_cfg, "preprocess_cfg": preprocess}, indent=2) + "\n")

    def reset_parameters(self) -> None:
        """Re-initialise every weight as open_clip initialises a new model (torch RNG).

        A fresh model is built from the same config (open_clip's own initialisation: the
        text tower's ``init_parameters``, its constructors' draws for the vision tower, the
        initial logit scale) and its weights are copied into this one.
        """
        fresh = _create(self.config_name or self.params.model_name)
        self.model.load_state_dict(fresh.state_dict())

    # -- the two towers --------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {"input_ids": self.tokenizer(texts)}

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixel_values)

    def encode_text(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.model.encode_text(batch["input_ids"])

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale

    @property
    def image_size(self) -> tuple[int, int] | None:
        size = getattr(getattr(self.model, "visual", None), "image_size", None)
        if size is None:
            return None
        return (int(size), int(size)) if isinstance(size, int) else \
            (int(size[0]), int(size[1]))

    def parameter_groups(self) -> dict[str, list[str]]:
        names = [n for n, _ in self.model.named_parameters()]
        scale = [n for n in names if n in ("logit_scale", "logit_bias")]
        projection = [n for n in names if n in ("visual.proj", "text_projection",
                                                "text.text_projection")
                      or n.startswith(("text_projection.", "text.text_projection.",
                                       "visual.head.proj.", "text.proj."))]
        taken = set(scale) | set(projection)
        vision = [n for n in names if n.startswith("visual.") and n not in taken]
        text = [n for n in names if n not in taken and not n.startswith("visual.")]
        return {"all": names, "vision": vision, "text": text, "projection": projection,
                "logit_scale": scale}

    @classmethod
    def tiny_problem(cls, seed: int = 0) -> TinyProblem:
        """A tiny open_clip CLIP trained briefly on synthetic coloured-shape captions."""
        from erasus_vlm._tiny import tiny_clip_problem

        return tiny_clip_problem(cls, cls.Params(), seed=seed)


def _digest(config: dict[str, Any]) -> str:
    return hashlib.sha1(_canonical(config).encode()).hexdigest()[:10]
