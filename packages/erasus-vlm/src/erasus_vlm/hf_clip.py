"""CLIP through transformers' ``CLIPModel``: a local directory, a hub id, or a fresh config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erasus.adapters import ADAPTER_FILE, WEIGHTS_FILE, TinyProblem
from erasus.errors import IncompatibleComponentError
from pydantic import Field

from erasus_vlm._clip import CLIP_PAPER, ClipAdapter, ClipParams, require

if TYPE_CHECKING:
    import torch
    from erasus.data import DataInfo

__all__ = ["TINY_HF_CONFIG", "HFClipAdapter", "HFClipParams"]

_BOS, _EOS = 49406, 49407

#: A tiny CLIPConfig (24x24 images in 6x6 patches, 2 + 2 layers of width 32, 16 text
#: positions, the real CLIP vocabulary of 49,408 tokens).
TINY_HF_CONFIG: dict[str, Any] = {
    "text_config": {"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64,
                    "num_hidden_layers": 2, "num_attention_heads": 2,
                    "max_position_embeddings": 16, "bos_token_id": _BOS,
                    "eos_token_id": _EOS, "pad_token_id": _EOS},
    "vision_config": {"image_size": 24, "patch_size": 6, "hidden_size": 32,
                      "intermediate_size": 64, "num_hidden_layers": 2,
                      "num_attention_heads": 2, "num_channels": 3},
    "projection_dim": 32,
}


class HFClipParams(ClipParams):
    """Parameters of the transformers CLIP adapter."""

    config: dict[str, Any] | None = Field(
        None, description="CLIPConfig keyword arguments (text_config, vision_config, "
        "projection_dim, ...) of a fresh, randomly initialised model; null: a tiny CLIP for "
        "tests and examples. Not used with model.path (the saved config.json is).")
    max_length: int | None = Field(
        None, ge=2, description="Tokens per text (padded or truncated; the last kept token "
        "of a truncated text is <|endoftext|>); default: the text model's "
        "max_position_embeddings.")
    trust_remote_code: bool = Field(
        False, description="Let from_pretrained run code from the model directory or hub "
        "repository (only for checkpoints you trust).")


class HFClipAdapter(ClipAdapter):
    """CLIP as transformers' ``CLIPModel`` (Radford et al. 2021): image-text pairs.

    Loaded with ``CLIPModel.from_pretrained(..., use_safetensors=True)`` from a local
    directory (or a hub id, where the hub is reachable), or built fresh from a
    ``CLIPConfig`` (``config``; by default a tiny one). The tokenizer is the directory's
    own when it has one, otherwise a ``CLIPTokenizer`` with CLIP's real BPE vocabulary,
    built offline from the copy open_clip ships. ``save`` writes ``save_pretrained``
    (``config.json``, ``model.safetensors``) and the tokenizer, so the directory loads in
    transformers too.

    The per-example loss is CLIP's symmetric contrastive (InfoNCE) loss of each pair
    against the other pairs of its batch (see :meth:`per_example_loss`): an example's loss
    depends on the rest of its batch, and a batch of one pair is an error. Features are the
    L2-normalised image embeddings; ``outputs(features=True)`` adds ``text_features``.
    Parameter groups: ``all``, ``vision`` (``vision_model``), ``text`` (``text_model``),
    ``projection`` (``visual_projection``, ``text_projection``) and ``logit_scale``.
    """

    name = "hf_clip"
    Params = HFClipParams
    paper = CLIP_PAPER

    # -- construction and persistence ------------------------------------------------------
    @classmethod
    def build(cls, params: HFClipParams, info: DataInfo | None = None) -> HFClipAdapter:
        """A freshly initialised ``CLIPModel`` of ``params.config`` (default: tiny)."""
        transformers = require("transformers")
        from erasus_vlm._bpe import clip_tokenizer

        kwargs = json.loads(json.dumps(params.config if params.config is not None
                                       else TINY_HF_CONFIG))
        try:
            config = transformers.CLIPConfig(**kwargs)
        except (TypeError, ValueError) as exc:
            raise IncompatibleComponentError(f"model 'hf_clip': invalid config: {exc}") from exc
        text = config.text_config
        if text.vocab_size < _EOS + 1:
            raise IncompatibleComponentError(
                f"model 'hf_clip': text_config.vocab_size is {text.vocab_size}, but the CLIP "
                f"tokenizer has {_EOS + 1} tokens; set it to {_EOS + 1}")
        model = transformers.CLIPModel(config)
        tokenizer = clip_tokenizer(int(text.max_position_embeddings))
        adapter = cls(model, params, tokenizer=tokenizer)
        adapter._check_data(info)
        return adapter

    @classmethod
    def load(cls, path: str | Path, params: HFClipParams | None = None,
             info: DataInfo | None = None) -> HFClipAdapter:
        """``CLIPModel.from_pretrained(path, use_safetensors=True)`` and its tokenizer.

        ``path`` is a local directory (written by ``save`` or ``save_pretrained``) or, where
        the hub is reachable, a hub id.
        """
        transformers = require("transformers")
        from erasus_vlm._bpe import clip_tokenizer

        local = Path(path).is_dir()
        if params is None:
            meta_file = Path(path) / ADAPTER_FILE
            meta = json.loads(meta_file.read_text()).get("params", {}) \
                if local and meta_file.is_file() else {}
            params = HFClipParams(**meta)
        if params.config is not None and "config" in params.model_fields_set:
            raise IncompatibleComponentError(
                "model 'hf_clip': model.config builds a fresh model, and model.path loads "
                "one with its own config.json; give only one of them")
        if local and not (Path(path) / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(
                f"no {WEIGHTS_FILE} in model directory {path} (weights are read from "
                "safetensors only; save the model with save_pretrained)")
        model = transformers.CLIPModel.from_pretrained(
            str(path), use_safetensors=True, trust_remote_code=params.trust_remote_code)
        has_tokenizer = not local or any((Path(path) / f).is_file() for f in (
            "tokenizer.json", "vocab.json"))
        max_length = int(model.config.text_config.max_position_embeddings)
        if has_tokenizer:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(path), trust_remote_code=params.trust_remote_code)
        else:
            tokenizer = clip_tokenizer(max_length)
        adapter = cls(model, params, tokenizer=tokenizer)
        adapter._check_data(info)
        return adapter

    def save(self, directory: str | Path) -> None:
        """``save_pretrained`` (config.json + model.safetensors), the tokenizer, adapter.json."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(directory))
        if not (directory / WEIGHTS_FILE).is_file():
            raise IncompatibleComponentError(
                f"save_pretrained wrote no {WEIGHTS_FILE} in {directory}; Erasus keeps "
                "weights as safetensors only (upgrade transformers)")
        self.tokenizer.save_pretrained(str(directory))
        params = self.params.model_dump(mode="json", exclude={"path", "config"})
        (directory / ADAPTER_FILE).write_text(
            json.dumps({"adapter": self.name, "params": params}, indent=2) + "\n")

    def reset_parameters(self) -> None:
        """Re-initialise every weight as transformers initialises a new ``CLIPModel``.

        A fresh model is built from this model's config (its ``_init_weights`` scheme,
        under the torch RNG) and its weights are copied into this one.
        """
        transformers = require("transformers")
        fresh = transformers.CLIPModel(self.model.config)
        missing = set(self.model.state_dict()) - set(fresh.state_dict())
        if missing:
            raise IncompatibleComponentError(
                f"cannot re-initialise {sorted(missing)[:5]}: a fresh CLIPModel of this config "
                "has no such weights")
        self.model.load_state_dict(fresh.state_dict())

    # -- the two towers --------------------------------------------------------------------
    @property
    def max_length(self) -> int:
        if self.params.max_length is not None:
            return int(self.params.max_length)
        return int(self.model.config.text_config.max_position_embeddings)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer(texts, padding="max_length", truncation=True,
                                max_length=self.max_length, return_tensors="pt")
        ids, mask = tokens["input_ids"], tokens["attention_mask"]
        eos = self.tokenizer.eos_token_id
        # CLIP pools the text at its first <|endoftext|>: keep one in every truncated text
        cut = (mask[:, -1] == 1) & (ids[:, -1] != eos)
        ids[cut, -1] = eos
        return {"input_ids": ids, "attention_mask": mask}

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model.vision_model(pixel_values=pixel_values)
        return self.model.visual_projection(out.pooler_output)

    def encode_text(self, batch: dict[str, Any]) -> torch.Tensor:
        out = self.model.text_model(input_ids=batch["input_ids"],
                                    attention_mask=batch.get("attention_mask"))
        return self.model.text_projection(out.pooler_output)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale

    @property
    def image_size(self) -> tuple[int, int] | None:
        size = self.model.config.vision_config.image_size
        return (int(size), int(size)) if isinstance(size, int) else \
            (int(size[0]), int(size[1]))

    def parameter_groups(self) -> dict[str, list[str]]:
        names = [n for n, _ in self.model.named_parameters()]
        return {
            "all": names,
            "vision": [n for n in names if n.startswith("vision_model.")],
            "text": [n for n in names if n.startswith("text_model.")],
            "projection": [n for n in names
                           if n.startswith(("visual_projection.", "text_projection."))],
            "logit_scale": [n for n in names if n == "logit_scale"],
        }

    @classmethod
    def tiny_problem(cls, seed: int = 0) -> TinyProblem:
        """A tiny transformers CLIPModel trained briefly on synthetic coloured-shape captions."""
        from erasus_vlm._tiny import tiny_clip_problem

        return tiny_clip_problem(cls, cls.Params(), seed=seed)
