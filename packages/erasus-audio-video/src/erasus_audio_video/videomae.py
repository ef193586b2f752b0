"""The ``videomae`` adapter: video classification with transformers' VideoMAE."""

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

__all__ = ["TINY_VIDEOMAE_CONFIG", "VideoMAEAdapter", "VideoMAEParams"]

#: VideoMAEConfig fields of the fresh model built when no path is given (``config`` and
#: the data's clip shape override them): 4 frames of 16x16, 8x8 patches, tubelets of 2
#: frames (8 tokens), 32 wide, one layer.
TINY_VIDEOMAE_CONFIG: dict[str, Any] = {
    "image_size": 16,
    "patch_size": 8,
    "num_channels": 3,
    "num_frames": 4,
    "tubelet_size": 2,
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "use_mean_pooling": True,
}

# Preprocessing configs a checkpoint may carry; kept verbatim when the model is saved.
_PREPROCESSING_FILES = ("preprocessor_config.json", "video_preprocessor_config.json")
_INPUT_KEYS = ("pixel_values", "video", "inputs", "x")
_LABEL_KEYS = ("labels", "label", "y", "target")

TONG_2022 = Paper(
    title="VideoMAE: Masked Autoencoders are Data-Efficient Learners for Self-Supervised "
    "Video Pre-Training",
    authors="Zhan Tong, Yibing Song, Jue Wang, Limin Wang",
    year=2022,
    url="https://arxiv.org/abs/2203.12602",
    venue="NeurIPS",
)


class VideoMAEParams(ModelParams):
    """Parameters of the VideoMAE adapter."""

    config: dict[str, Any] | None = Field(
        None, description="VideoMAEConfig fields of a fresh model (when no path is given); "
        "they override the tiny defaults (TINY_VIDEOMAE_CONFIG) and the clip shape taken "
        "from the data set. Ignored when loading from path.")
    num_classes: int | None = Field(
        None, ge=2, description="Classes of a fresh model (default: from the data set). "
        "A loaded model keeps its own (config.num_labels).")


class VideoMAEAdapter(ModelAdapter):
    """VideoMAE (``VideoMAEForVideoClassification``): clips in, class logits out.

    Dataset items are dicts ``{"pixel_values": float tensor [frames, channels, height,
    width], "labels": int}`` (or ``(clip, label)`` pairs), preprocessed as the checkpoint
    expects (a pretrained VideoMAE: ``VideoMAEImageProcessor`` normalisation); the
    default collate function stacks them. The per-example loss is the cross-entropy of
    the logits; ``outputs`` gives ``logits`` and ``labels`` too, and ``features`` is the
    pooled representation the classifier reads (the mean-pooled, ``fc_norm``-ed encoder
    output, or the first token's when the model does not mean-pool).

    It declares the modalities ``("video", "classification")``: it is a classifier with
    the classifier contract (``num_classes``, ``labels``, ``with_labels``, logits and
    labels in ``outputs``), so the classification components (``accuracy``,
    ``mia_efficacy``, ``random_label``, ``avg_gap``) run on it as on the ``classifier``
    adapter. Parameter groups: ``all``, ``encoder``, ``embeddings``, one per encoder layer
    (``layer.0``...), ``classifier`` (the last linear layer), ``head`` (``fc_norm`` and the
    classifier) and ``body`` (everything else).
    """

    name = "videomae"
    modalities = ("video", "classification")
    Params = VideoMAEParams
    paper = TONG_2022
    accepts_hub_ids = True  # ``path`` may be a hub id (loaded when the hub is reachable)

    def __init__(self, model: torch.nn.Module, params: VideoMAEParams | None = None, *,
                 source: Path | None = None, **kwargs: Any) -> None:
        super().__init__(model, params, **kwargs)
        self.source = source  # the directory it was loaded from (its files are carried)

    # -- construction and persistence ------------------------------------------------
    @classmethod
    def build(cls, params: VideoMAEParams, info: DataInfo | None = None) -> VideoMAEAdapter:
        """A fresh VideoMAE classifier sized to the data (or the model at ``params.path``)."""
        if params.path:
            return cls.load(params.path, params, info)
        from erasus_audio_video._hf import require_transformers

        transformers = require_transformers()
        fields = dict(TINY_VIDEOMAE_CONFIG)
        shape = info.input_shape if info is not None else None
        if shape is not None:
            if len(shape) != 4 or shape[2] != shape[3]:
                raise IncompatibleComponentError(
                    f"model 'videomae' takes square clips [frames, channels, size, size]; the "
                    f"data set's input_shape is {list(shape)}")
            fields.update(num_frames=int(shape[0]), num_channels=int(shape[1]),
                          image_size=int(shape[2]))
        fields.update(params.config or {})
        num_classes = params.num_classes or (info.num_classes if info is not None else None)
        if num_classes is None:
            raise IncompatibleComponentError(
                "model 'videomae' needs the number of classes to build a classifier; set "
                "model.num_classes or use a data set that gives it")
        config = transformers.VideoMAEConfig(**fields, num_labels=int(num_classes))
        model = transformers.VideoMAEForVideoClassification(config)
        model.eval()
        return cls(model, params.model_copy(update={"num_classes": int(num_classes)}))

    @classmethod
    def load(cls, path: str | Path, params: VideoMAEParams | None = None,
             info: DataInfo | None = None) -> VideoMAEAdapter:
        """A VideoMAE classification checkpoint: a local directory or a hub id (when the
        hub is reachable). Weights from safetensors only."""
        from erasus_audio_video._hf import (
            is_local_dir,
            load_hf_model,
            read_adapter_params,
            require_transformers,
        )

        transformers = require_transformers()
        if params is None:
            params = VideoMAEParams(**read_adapter_params(path)) if is_local_dir(path) \
                else VideoMAEParams()
        model = load_hf_model(transformers.VideoMAEForVideoClassification, path,
                              what="model 'videomae'")
        labels = int(model.config.num_labels)
        if info is not None and info.num_classes and int(info.num_classes) != labels:
            raise IncompatibleComponentError(
                f"model 'videomae' at '{path}' has {labels} classes but the data set has "
                f"{info.num_classes}")
        model.eval()
        local = Path(path).expanduser()
        return cls(model, params.model_copy(update={"num_classes": labels}),
                   source=local if is_local_dir(path) else None)

    def save(self, directory: str | Path) -> None:
        """``save_pretrained`` (safetensors) of the model, its preprocessing configs (when it
        was loaded with any) and ``adapter.json``."""
        from erasus_audio_video._hf import copy_files, save_model, write_adapter_json

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_model(self.model, directory)
        copy_files(self.source, directory, _PREPROCESSING_FILES)
        write_adapter_json(directory, self.name, self.params.model_dump(mode="json"))

    def reset_parameters(self) -> None:
        """Re-initialise every weight with VideoMAE's own init (a fresh model's weights)."""
        from erasus_audio_video._hf import fresh_copy_init

        fresh_copy_init(self.model)

    # -- batches ---------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return int(self.model.config.num_labels)

    def prepare_batch(self, batch: Any) -> dict[str, Any]:
        from erasus.builtin.models.classifier import inputs_and_labels

        x, y = inputs_and_labels(batch, "videomae", _INPUT_KEYS, _LABEL_KEYS)
        config = self.model.config
        expected = (int(config.num_frames), int(config.num_channels), int(config.image_size),
                    int(config.image_size))
        if x.dim() != 5 or tuple(x.shape[1:]) != expected:
            raise IncompatibleComponentError(
                f"videomae clips must be [batch, {', '.join(map(str, expected))}] (frames, "
                f"channels, height, width); got {list(x.shape)}")
        dtype = next(self.model.parameters()).dtype
        return {"pixel_values": x.to(device=self.device, dtype=dtype),
                "labels": y.to(self.device).long()}

    # -- the interface strategies and metrics use -------------------------------------
    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        """The pooled representation the classifier reads, ``[batch, hidden]``."""
        model = self.model
        hidden = model.videomae(batch["pixel_values"]).last_hidden_state
        if model.fc_norm is not None:
            return model.fc_norm(hidden.mean(dim=1))
        return hidden[:, 0]

    def logits(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.model.classifier(self.features(batch))

    def per_example_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(self.logits(batch).float(), batch["labels"], reduction="none")

    def outputs(self, batch: dict[str, Any], *, features: bool = False
                ) -> dict[str, torch.Tensor]:
        import torch.nn.functional as F

        feats = self.features(batch)
        logits = self.model.classifier(feats)
        out = {"logits": logits, "labels": batch["labels"],
               "loss": F.cross_entropy(logits.float(), batch["labels"], reduction="none")}
        if features:
            out["features"] = feats
        return out

    @staticmethod
    def labels(batch: dict[str, Any]) -> torch.Tensor:
        return batch["labels"]

    @staticmethod
    def with_labels(batch: dict[str, Any], labels: torch.Tensor) -> dict[str, Any]:
        """A copy of ``batch`` with other labels (for relabelling strategies)."""
        return {**batch, "labels": labels}

    def parameter_groups(self) -> dict[str, list[str]]:
        names = [n for n, _ in self.model.named_parameters()]
        head = [n for n in names if n.startswith(("fc_norm.", "classifier."))]
        groups: dict[str, list[str]] = {
            "all": names,
            "encoder": [n for n in names if n.startswith("videomae.")],
            "embeddings": [n for n in names if n.startswith("videomae.embeddings.")],
            "classifier": [n for n in names if n.startswith("classifier.")],
            "head": head,
            "body": [n for n in names if n not in head],
        }
        prefix = "videomae.encoder.layer."
        layers = sorted({int(n[len(prefix):].split(".")[0]) for n in names
                         if n.startswith(prefix)})
        for i in layers:
            groups[f"layer.{i}"] = [n for n in names if n.startswith(f"{prefix}{i}.")]
        return groups

    # -- testing ------------------------------------------------------------------------
    @classmethod
    def tiny_problem(cls, seed: int = 0) -> TinyProblem:
        """A tiny VideoMAE trained on ``synthetic_video`` (:data:`TINY_VIDEO` settings)."""
        import torch

        from erasus_audio_video._hf import fit
        from erasus_audio_video.video import TINY_VIDEO, SyntheticVideo

        splits = SyntheticVideo(**TINY_VIDEO).load(seed=seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            adapter = cls.build(VideoMAEParams(), splits.info)
            fit(adapter, splits.train, splits.collate_fn, **TINY_TRAINING, seed=seed)
        return TinyProblem(adapter, splits.forget, splits.retain, splits.test,
                           collate_fn=splits.collate_fn, info=splits.info, extra=splits.extra)


#: How tiny_problem trains its model (Adam on minibatches of the tiny training set).
TINY_TRAINING: dict[str, Any] = {"steps": 120, "lr": 3e-3, "batch_size": 32}
