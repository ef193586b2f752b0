"""The ``whisper`` adapter: speech recognition with transformers' Whisper (seq2seq)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from erasus.adapters import ModelAdapter, ModelParams, TinyProblem
from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from pydantic import Field

if TYPE_CHECKING:
    import torch
    from erasus.data import DataInfo

__all__ = ["TINY_WHISPER_CONFIG", "WhisperAdapter", "WhisperParams"]

#: WhisperConfig fields of the fresh model built when no path is given (``config``
#: overrides them). Tiny: 32 wide, one encoder and one decoder layer, 16 mel bins.
TINY_WHISPER_CONFIG: dict[str, Any] = {
    "num_mel_bins": 16,
    "d_model": 32,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "max_target_positions": 32,
}

_SAMPLING_RATE = 16000  # Whisper's mel filters and hop length assume 16 kHz audio
_HOP_LENGTH = 160
_N_FFT = 400

RADFORD_2022 = Paper(
    title="Robust Speech Recognition via Large-Scale Weak Supervision",
    authors="Alec Radford, Jong Wook Kim, Tao Xu, Greg Brockman, Christine McLeavey, "
    "Ilya Sutskever",
    year=2022,
    url="https://arxiv.org/abs/2212.04356",
    venue="ICML 2023",
)


def _check_sampling_rate(info: DataInfo | None) -> None:
    rate = (info.extra.get("sampling_rate") if info is not None else None) or _SAMPLING_RATE
    if int(rate) != _SAMPLING_RATE:
        raise IncompatibleComponentError(
            f"model 'whisper' takes 16 kHz audio but the data set's sampling rate is {rate}; "
            "resample the data (synthetic_speech: sampling_rate: 16000)")


class WhisperParams(ModelParams):
    """Parameters of the Whisper adapter."""

    config: dict[str, Any] | None = Field(
        None, description="WhisperConfig fields of a fresh model (when no path is given); "
        "they override the tiny defaults (TINY_WHISPER_CONFIG: d_model 32, one encoder and "
        "one decoder layer, 16 mel bins). Ignored when loading from path.")
    chunk_seconds: int = Field(
        1, ge=1, le=30, description="Seconds of audio per input of a fresh model (real "
        "Whisper: 30): every clip is padded or cut to this, and the encoder's "
        "max_source_positions is set to match (chunk_seconds * 50). Ignored when loading.")
    prefix_tokens: list[str] = Field(
        default_factory=list, description="Special tokens fed to the decoder after the "
        "start token and before the transcript, but not scored; for a real multilingual "
        "checkpoint e.g. ['<|en|>', '<|transcribe|>', '<|notimestamps|>'].")
    max_target_tokens: int | None = Field(
        None, ge=2, description="Decoder positions per example: the start token, the prefix "
        "and the transcript's tokens (as many labels: prefix, transcript, EOS); longer "
        "transcripts are cut. Default: the model's max_target_positions.")


class WhisperAdapter(ModelAdapter):
    """Whisper (``WhisperForConditionalGeneration``): log-mel features in, transcript out.

    Dataset items are dicts ``{"audio": float waveform at 16 kHz, "text": str}`` or
    ``{"input_features": log-mel tensor [mel bins, frames], "text": str}``; batches are
    dicts of lists (``collate_speech``) or of stacked tensors. ``prepare_batch`` computes
    the log-mel features with the model's ``WhisperFeatureExtractor`` (padding or cutting
    every clip to the model's input length) and builds teacher-forced decoder inputs::

        decoder_input_ids = [decoder_start] + prefix + transcript
        labels            = [-100] * len(prefix) + transcript + [EOS]

    (the labels shifted left by one; padding is ``-100``), so the per-example loss is the
    mean negative log-likelihood of the transcript's tokens and the end of transcript,
    never of the start or prefix tokens or the padding. ``features`` is the encoder output
    mean-pooled over time. Parameter groups: ``all``, ``encoder``, ``decoder``,
    ``cross_attention`` (the decoder's ``encoder_attn`` and its layer norm),
    ``embeddings`` (decoder token and position embeddings; the token embedding is tied
    to the output projection) and one group per layer (``encoder.layers.0``...).

    A fresh model (no ``path``) is a tiny Whisper from ``config`` with an offline
    byte-level tokenizer (see ``erasus_audio_video._tokenizer``); a saved or real
    checkpoint directory brings its own tokenizer and feature extractor.
    """

    name = "whisper"
    modalities = ("audio",)
    Params = WhisperParams
    paper = RADFORD_2022
    accepts_hub_ids = True  # ``path`` may be a hub id (loaded when the hub is reachable)

    def __init__(self, model: torch.nn.Module, params: WhisperParams | None = None, *,
                 tokenizer: Any = None, feature_extractor: Any = None, **kwargs: Any
                 ) -> None:
        super().__init__(model, params, **kwargs)
        if tokenizer is None or feature_extractor is None:
            raise IncompatibleComponentError(
                "the whisper adapter needs the model's tokenizer and feature extractor; "
                "build it with WhisperAdapter.build or WhisperAdapter.load")
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self._check_compatible()

    # -- construction and persistence ------------------------------------------------
    @classmethod
    def wrap(cls, obj: Any, params: WhisperParams | None = None) -> WhisperAdapter:
        """Wrap a Whisper model the user holds, with what turns audio and text into its
        inputs: ``(model, processor)`` (a ``WhisperProcessor``) or ``(model, tokenizer,
        feature_extractor)``."""
        parts = tuple(obj) if isinstance(obj, (tuple, list)) else (obj,)
        if len(parts) == 2 and hasattr(parts[1], "tokenizer") and \
                hasattr(parts[1], "feature_extractor"):
            parts = (parts[0], parts[1].tokenizer, parts[1].feature_extractor)
        if len(parts) != 3:
            raise IncompatibleComponentError(
                "model 'whisper' wraps (model, processor) or (model, tokenizer, "
                "feature_extractor): the model alone cannot turn audio and transcripts into "
                "its inputs")
        model, tokenizer, extractor = parts
        return cls(model, params or WhisperParams(), tokenizer=tokenizer,
                   feature_extractor=extractor)

    @classmethod
    def build(cls, params: WhisperParams, info: DataInfo | None = None) -> WhisperAdapter:
        """A fresh tiny Whisper from ``params.config`` (or the model at ``params.path``)."""
        if params.path:
            return cls.load(params.path, params, info)
        from erasus_audio_video._hf import require_transformers
        from erasus_audio_video._tokenizer import byte_tokenizer

        transformers = require_transformers()
        _check_sampling_rate(info)
        tokenizer = byte_tokenizer()
        frames = params.chunk_seconds * _SAMPLING_RATE // _HOP_LENGTH
        fields = {**TINY_WHISPER_CONFIG, **(params.config or {})}
        fixed = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                 "eos_token_id": tokenizer.eos_token_id,
                 "bos_token_id": tokenizer.bos_token_id,
                 "decoder_start_token_id": tokenizer.bos_token_id,
                 "max_source_positions": frames // 2}
        clash = {k: fields[k] for k in fixed if k in fields and fields[k] != fixed[k]}
        if clash:
            raise IncompatibleComponentError(
                f"model.config sets {clash}, which a fresh whisper model derives itself: the "
                "token ids and vocabulary size from its byte-level tokenizer, "
                "max_source_positions from chunk_seconds; remove them (or set chunk_seconds)")
        config = transformers.WhisperConfig(
            **{**fields, **fixed}, suppress_tokens=[], begin_suppress_tokens=[])
        model = transformers.WhisperForConditionalGeneration(config)
        extractor = transformers.WhisperFeatureExtractor(
            feature_size=config.num_mel_bins, sampling_rate=_SAMPLING_RATE,
            hop_length=_HOP_LENGTH, chunk_length=params.chunk_seconds, n_fft=_N_FFT)
        model.eval()
        return cls(model, params, tokenizer=tokenizer, feature_extractor=extractor)

    @classmethod
    def load(cls, path: str | Path, params: WhisperParams | None = None,
             info: DataInfo | None = None) -> WhisperAdapter:
        """A Whisper checkpoint: a local directory (``save`` / ``save_pretrained``) or a hub
        id when the hub is reachable. Weights from safetensors only."""
        from erasus_audio_video._hf import (
            is_local_dir,
            load_hf_model,
            read_adapter_params,
            require_transformers,
        )

        transformers = require_transformers()
        _check_sampling_rate(info)
        if params is None:
            params = WhisperParams(**read_adapter_params(path)) if is_local_dir(path) \
                else WhisperParams()
        model = load_hf_model(transformers.WhisperForConditionalGeneration, path,
                              what="model 'whisper'")
        source = str(Path(path).expanduser()) if is_local_dir(path) else str(path)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as exc:
            raise IncompatibleComponentError(
                f"model 'whisper': no tokenizer in '{path}' ({exc}); save the tokenizer "
                "beside the model (tokenizer.save_pretrained(dir))") from None
        if is_local_dir(path) and not (Path(source) / "preprocessor_config.json").is_file():
            # No feature-extractor config: Whisper's defaults, sized to this model.
            chunk, rest = divmod(2 * model.config.max_source_positions * _HOP_LENGTH,
                                 _SAMPLING_RATE)
            if rest or chunk < 1:
                raise IncompatibleComponentError(
                    f"model 'whisper': no preprocessor_config.json in '{path}' and "
                    f"max_source_positions={model.config.max_source_positions} is not a whole "
                    "number of seconds of 16 kHz audio; save the feature extractor too")
            extractor = transformers.WhisperFeatureExtractor(
                feature_size=model.config.num_mel_bins, sampling_rate=_SAMPLING_RATE,
                hop_length=_HOP_LENGTH, chunk_length=chunk, n_fft=_N_FFT)
        else:
            extractor = transformers.WhisperFeatureExtractor.from_pretrained(source)
        model.eval()
        return cls(model, params, tokenizer=tokenizer, feature_extractor=extractor)

    def save(self, directory: str | Path) -> None:
        """``save_pretrained`` (safetensors) of the model, tokenizer and feature extractor,
        plus ``adapter.json``: a directory ``from_pretrained`` and :meth:`load` both read."""
        from erasus_audio_video._hf import save_model, write_adapter_json

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_model(self.model, directory)
        self.tokenizer.save_pretrained(directory)
        self.feature_extractor.save_pretrained(directory)
        write_adapter_json(directory, self.name, self.params.model_dump(mode="json"))

    def reset_parameters(self) -> None:
        """Re-initialise every weight with Whisper's own init (a fresh model's weights)."""
        from erasus_audio_video._hf import fresh_copy_init

        fresh_copy_init(self.model)

    # -- batches ---------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        """Mel frames per input (twice the encoder's ``max_source_positions``)."""
        return 2 * int(self.model.config.max_source_positions)

    def _check_compatible(self) -> None:
        config = self.model.config
        fe = self.feature_extractor
        if int(fe.feature_size) != int(config.num_mel_bins) or \
                int(fe.nb_max_frames) != self.num_frames:
            raise IncompatibleComponentError(
                f"model 'whisper': the feature extractor gives {fe.feature_size} mel bins x "
                f"{fe.nb_max_frames} frames but the model takes {config.num_mel_bins} x "
                f"{self.num_frames} (max_source_positions={config.max_source_positions}); set "
                "the feature extractor's feature_size and chunk_length to match")
        for attr in ("decoder_start_token_id", "eos_token_id"):
            if getattr(config, attr, None) is None:
                raise IncompatibleComponentError(
                    f"model 'whisper': the model config has no {attr}; the seq2seq loss "
                    "needs it")
        self._prefix_ids = self._token_ids(self.params.prefix_tokens)
        limit = self.max_target_tokens
        if limit < len(self._prefix_ids) + 2:
            raise IncompatibleComponentError(
                f"model 'whisper': max_target_tokens={limit} leaves no room for a transcript "
                f"after the start token and {len(self._prefix_ids)} prefix tokens")

    def _token_ids(self, tokens: list[str]) -> list[int]:
        ids = []
        for token in tokens:
            tid = self.tokenizer.convert_tokens_to_ids(token)
            if tid is None or tid == self.tokenizer.unk_token_id:
                raise IncompatibleComponentError(
                    f"model 'whisper': prefix token {token!r} is not in the tokenizer's "
                    "vocabulary")
            ids.append(int(tid))
        return ids

    @property
    def max_target_tokens(self) -> int:
        limit = int(self.model.config.max_target_positions)
        wanted = self.params.max_target_tokens
        return min(limit, int(wanted)) if wanted else limit

    def _features(self, batch: dict[str, Any]) -> torch.Tensor:
        import numpy as np
        import torch

        if "input_features" in batch:
            feats = batch["input_features"]
            if isinstance(feats, (list, tuple)):
                feats = torch.stack([torch.as_tensor(f) for f in feats])
            feats = torch.as_tensor(feats)
        elif "audio" in batch:
            audio = batch["audio"]
            if isinstance(audio, torch.Tensor) and audio.dim() == 1:
                audio = [audio]
            waves = [np.asarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a,
                                dtype=np.float32).reshape(-1) for a in audio]
            out = self.feature_extractor(
                waves, sampling_rate=self.feature_extractor.sampling_rate,
                return_tensors="np", padding="max_length", truncation=True)
            feats = torch.from_numpy(np.asarray(out["input_features"]))
        else:
            raise IncompatibleComponentError(
                "whisper batches need 'audio' (16 kHz waveforms) or 'input_features' "
                f"(log-mel features) and 'text'; got keys {sorted(batch)}")
        expected = (int(self.model.config.num_mel_bins), self.num_frames)
        if feats.dim() != 3 or tuple(feats.shape[1:]) != expected:
            raise IncompatibleComponentError(
                f"whisper input_features must be [batch, {expected[0]}, {expected[1]}] "
                f"(mel bins, frames); got {list(feats.shape)}")
        return feats

    def prepare_batch(self, batch: Any) -> dict[str, Any]:
        """Log-mel features and teacher-forced decoder inputs and labels (see the class)."""
        import torch

        if not isinstance(batch, dict):
            raise IncompatibleComponentError(
                "whisper batches must be dicts with 'audio' or 'input_features' and 'text' "
                f"(collate with erasus_audio_video.collate_speech); got {type(batch).__name__}")
        feats = self._features(batch)
        texts = batch.get("text")
        if isinstance(texts, str):
            texts = [texts]
        if texts is None or len(texts) != feats.shape[0]:
            raise IncompatibleComponentError(
                "whisper batches need one transcript ('text') per example; got "
                f"{'none' if texts is None else len(texts)} for {feats.shape[0]} inputs")
        config = self.model.config
        start, eos = int(config.decoder_start_token_id), int(config.eos_token_id)
        pad = int(config.pad_token_id) if config.pad_token_id is not None else eos
        prefix = self._prefix_ids
        # decoder positions: start + prefix + transcript (the labels: prefix + transcript + EOS)
        room = self.max_target_tokens - 1 - len(prefix)
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        rows_in, rows_lab = [], []
        for ids in encoded:
            ids = list(ids)[:room]
            rows_in.append([start, *prefix, *ids])
            rows_lab.append([-100] * len(prefix) + ids + [eos])
        length = max(len(r) for r in rows_in)
        n = len(rows_in)
        dec = torch.full((n, length), pad, dtype=torch.long)
        labels = torch.full((n, length), -100, dtype=torch.long)
        mask = torch.zeros((n, length), dtype=torch.long)
        for i, (ri, rl) in enumerate(zip(rows_in, rows_lab, strict=True)):
            dec[i, : len(ri)] = torch.tensor(ri)
            labels[i, : len(rl)] = torch.tensor(rl)
            mask[i, : len(ri)] = 1
        device = self.device
        dtype = next(self.model.parameters()).dtype
        return {"input_features": feats.to(device=device, dtype=dtype),
                "decoder_input_ids": dec.to(device), "decoder_attention_mask": mask.to(device),
                "labels": labels.to(device)}

    # -- the interface strategies and metrics use -------------------------------------
    def _logits(self, batch: dict[str, Any], encoder_hidden: torch.Tensor | None = None
                ) -> torch.Tensor:
        kwargs: dict[str, Any] = {"decoder_input_ids": batch["decoder_input_ids"],
                                  "decoder_attention_mask": batch["decoder_attention_mask"],
                                  "use_cache": False}
        if encoder_hidden is not None:
            kwargs["encoder_outputs"] = (encoder_hidden,)
        else:
            kwargs["input_features"] = batch["input_features"]
        return self.model(**kwargs).logits

    @staticmethod
    def _token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        nll = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100,
                              reduction="none")
        counts = (labels != -100).sum(dim=1).clamp(min=1)
        return nll.sum(dim=1) / counts

    def per_example_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Mean token NLL of each transcript (its tokens and EOS), shape ``[batch]``."""
        return self._token_nll(self._logits(batch), batch["labels"])

    def token_losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each transcript token's NLL and its mask, ``[batch, T]`` (their masked mean is
        :meth:`per_example_loss`; the mask's row sum is the transcript length)."""
        import torch.nn.functional as F

        labels = batch["labels"]
        nll = F.cross_entropy(self._logits(batch).float().transpose(1, 2), labels,
                              ignore_index=-100, reduction="none")
        mask = labels != -100
        return nll * mask, mask

    def encode(self, batch: dict[str, Any]) -> torch.Tensor:
        """The encoder's last hidden state, ``[batch, positions, d_model]``."""
        return self.model.get_encoder()(batch["input_features"]).last_hidden_state

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        """The encoder output mean-pooled over time, ``[batch, d_model]``."""
        return self.encode(batch).mean(dim=1)

    def outputs(self, batch: dict[str, Any], *, features: bool = False
                ) -> dict[str, torch.Tensor]:
        if not features:
            return {"loss": self.per_example_loss(batch)}
        hidden = self.encode(batch)  # one encoder pass serves the loss and the features
        loss = self._token_nll(self._logits(batch, hidden), batch["labels"])
        return {"loss": loss, "features": hidden.mean(dim=1)}

    def parameter_groups(self) -> dict[str, list[str]]:
        names = [n for n, _ in self.model.named_parameters()]
        groups: dict[str, list[str]] = {
            "all": names,
            "encoder": [n for n in names if n.startswith("model.encoder.")],
            "decoder": [n for n in names if n.startswith("model.decoder.")],
            "cross_attention": [n for n in names if ".encoder_attn." in n
                                or ".encoder_attn_layer_norm." in n],
            "embeddings": [n for n in names if n.startswith(("model.decoder.embed_tokens.",
                                                             "model.decoder.embed_positions."))],
        }
        for part in ("encoder", "decoder"):
            prefix = f"model.{part}.layers."
            layers = sorted({int(n[len(prefix):].split(".")[0]) for n in names
                             if n.startswith(prefix)})
            for i in layers:
                groups[f"{part}.layers.{i}"] = [n for n in names
                                                if n.startswith(f"{prefix}{i}.")]
        return groups

    # -- testing ------------------------------------------------------------------------
    @classmethod
    def tiny_problem(cls, seed: int = 0) -> TinyProblem:
        """A tiny Whisper trained on ``synthetic_speech`` (:data:`TINY_SPEECH` settings)."""
        import torch

        from erasus_audio_video._hf import fit
        from erasus_audio_video.speech import TINY_SPEECH, SyntheticSpeech

        splits = SyntheticSpeech(**TINY_SPEECH).load(seed=seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            adapter = cls.build(WhisperParams(), splits.info)
            fit(adapter, splits.train, splits.collate_fn, **TINY_TRAINING, seed=seed)
        # the tiny speakers' transcripts are alike, so wga's default retain term (weight 2)
        # also lowers the forget loss within the suite's few steps; weight 1 does not
        return TinyProblem(adapter, splits.forget, splits.retain, splits.test,
                           collate_fn=splits.collate_fn, info=splits.info, extra=splits.extra,
                           strategy_params={"wga": {"retain_weight": 1.0}})


#: How tiny_problem trains its model (Adam, full batches of the tiny training set).
TINY_TRAINING: dict[str, Any] = {"steps": 120, "lr": 3e-3, "batch_size": 32}
