"""What the CLIP adapters share: image-text batches and the per-pair contrastive loss."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, ClassVar

from erasus.adapters import ModelAdapter, ModelParams
from erasus.components import Paper
from erasus.errors import IncompatibleComponentError, MissingDependencyError
from pydantic import Field

from erasus_vlm.synthetic import MODALITY

if TYPE_CHECKING:
    import torch

__all__ = [
    "CLIP_PAPER",
    "MAX_LOGIT_SCALE",
    "ClipAdapter",
    "ClipParams",
    "check_saved_fields",
    "contrast_groups",
    "symmetric_contrastive_loss",
]

CLIP_PAPER = Paper(
    title="Learning Transferable Visual Models From Natural Language Supervision",
    authors="Alec Radford, Jong Wook Kim, Chris Hallacy, Aditya Ramesh, Gabriel Goh, "
            "Sandhini Agarwal, Girish Sastry, Amanda Askell, Pamela Mishkin, Jack Clark, "
            "Gretchen Krueger, Ilya Sutskever",
    year=2021,
    url="https://arxiv.org/abs/2103.00020",
    venue="ICML",
)

#: CLIP clips the learned temperature so that logits are scaled by at most 100.
MAX_LOGIT_SCALE = 100.0

_IMAGE_KEYS = ("pixel_values", "image", "images")
_TEXT_KEYS = ("text", "texts", "caption", "captions")


def require(module: str) -> Any:
    """Import an optional dependency, or fail with the install hint of this package."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"the vision-language adapters need '{module}' ({exc}); install them with "
            "pip install \"erasus[vlm]\"") from exc


class ClipParams(ModelParams):
    """Parameters every CLIP adapter accepts."""

    contrast_size: int | None = Field(
        None, ge=2, description="Pairs each pair is contrasted with: null contrasts every "
        "pair of a batch with the whole batch (CLIP's training loss); k splits a batch into "
        "consecutive groups of k pairs (a last group of one joins the previous group), so "
        "that losses of batches of different sizes are on the same scale.")


def check_saved_fields(saved: dict[str, Any], params: ClipParams) -> None:
    """Refuse params that explicitly name another architecture than a saved model's."""
    for key, value in saved.items():
        given = getattr(params, key, None)
        if key in params.model_fields_set and given is not None and given != value:
            raise IncompatibleComponentError(
                f"model.path holds a model with another {key} than the model params give "
                f"({given!r}); drop model.{key} (the saved architecture is used) or load "
                "another directory")


def contrast_groups(n: int, size: int | None) -> list[tuple[int, int]]:
    """The ``(start, stop)`` ranges of the contrast groups of a batch of ``n`` pairs."""
    if n < 2:
        raise IncompatibleComponentError(
            f"the contrastive loss of a batch of {n} image-text pair(s) is undefined: each "
            "pair is scored against the other pairs of its batch, so a batch needs at least "
            "2; choose batch sizes (strategy.batch_size, train.batch_size, "
            "run.eval_batch_size) so that no batch holds a single pair")
    if size is None or size >= n:
        return [(0, n)]
    starts = list(range(0, n, size))
    groups = [(s, min(s + size, n)) for s in starts]
    if groups[-1][1] - groups[-1][0] == 1:
        last = groups.pop()
        groups[-1] = (groups[-1][0], last[1])
    return groups


def symmetric_contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                               logit_scale: torch.Tensor, group_size: int | None = None
                               ) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss of each image-text pair, shape ``[batch]``.

    For pair ``i`` of a group, with L2-normalised features and ``s = exp(logit_scale)``
    (at most :data:`MAX_LOGIT_SCALE`), the logits are ``s * image_i . text_j``; the loss is
    ``0.5 * (CE(image_i -> texts, target i) + CE(text_i -> images, target i))``. The mean
    over a batch is CLIP's training loss (Radford et al. 2021). A pair's loss depends on
    the other pairs of its group: they are its negatives.
    """
    import torch
    import torch.nn.functional as F

    n = image_features.shape[0]
    if text_features.shape[0] != n:
        raise IncompatibleComponentError(
            f"{n} images but {text_features.shape[0]} texts in one contrastive batch")
    img = F.normalize(image_features.float(), dim=-1)
    txt = F.normalize(text_features.float(), dim=-1)
    scale = logit_scale.float().exp().clamp(max=MAX_LOGIT_SCALE).reshape(())
    parts = []
    for start, stop in contrast_groups(n, group_size):
        logits = scale * img[start:stop] @ txt[start:stop].T
        target = torch.arange(stop - start, device=logits.device)
        parts.append(0.5 * (F.cross_entropy(logits, target, reduction="none")
                            + F.cross_entropy(logits.T, target, reduction="none")))
    return torch.cat(parts)


class ClipAdapter(ModelAdapter):
    """Base of the CLIP adapters: image-text batches, the per-pair contrastive loss.

    Subclasses give the tokenizer (``tokenize``), the two towers (``encode_image``,
    ``encode_text``), the learned log temperature (``logit_scale``) and the input size.
    """

    modalities = (MODALITY,)
    Params: ClassVar[type[ClipParams]] = ClipParams
    paper = CLIP_PAPER
    min_batch_size = 2  # a pair's contrastive loss needs at least one other pair

    def __init__(self, model: torch.nn.Module, params: ClipParams | None = None, *,
                 tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(model, params, **kwargs)
        self.tokenizer = tokenizer

    # -- what subclasses provide ----------------------------------------------------------
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Token tensors of the texts (``input_ids`` and, where used, ``attention_mask``)."""
        raise NotImplementedError

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Image embeddings in the joint space (projected, not normalised)."""
        raise NotImplementedError

    def encode_text(self, batch: dict[str, Any]) -> torch.Tensor:
        """Text embeddings in the joint space (projected, not normalised)."""
        raise NotImplementedError

    @property
    def logit_scale(self) -> torch.Tensor:
        """The learned log temperature (a parameter of the model)."""
        raise NotImplementedError

    @property
    def image_size(self) -> tuple[int, int] | None:
        """The ``(height, width)`` the vision tower expects, when it fixes one."""
        return None

    def _check_data(self, info: Any) -> None:
        """Refuse data whose images have another size than the vision tower takes."""
        shape = getattr(info, "input_shape", None) if info is not None else None
        size = self.image_size
        if shape and size and tuple(shape[-2:]) != tuple(size):
            raise IncompatibleComponentError(
                f"model '{self.name}' takes {size[0]}x{size[1]} images but the data's are "
                f"{shape[-2]}x{shape[-1]}; set the data's image size (data.image_size) or "
                "the model config's vision image size to match")

    # -- the adapter interface -----------------------------------------------------------
    def clone(self) -> ClipAdapter:
        """A deep copy of the model; the (stateless) tokenizer is shared."""
        new = copy.copy(self)
        new.model = copy.deepcopy(self.model)
        return new

    def prepare_batch(self, batch: Any) -> dict[str, Any]:
        """``{"pixel_values": [B, 3, H, W], "input_ids": [B, L], ...}`` on the device.

        Accepts dicts with an image key (``image``, ``images``, ``pixel_values``) and a text
        key (``text``, ``texts``, ``caption``, ``captions``: strings) or ready ``input_ids``
        (with ``attention_mask``), and ``(images, texts)`` pairs.
        """
        import torch

        if isinstance(batch, dict):
            image_key = next((k for k in _IMAGE_KEYS if k in batch), None)
            text_key = next((k for k in _TEXT_KEYS if k in batch), None)
            if image_key is None or (text_key is None and "input_ids" not in batch):
                raise IncompatibleComponentError(
                    f"image-text batches need an image key ({', '.join(_IMAGE_KEYS)}) and a "
                    f"text key ({', '.join(_TEXT_KEYS)}) or input_ids; got keys "
                    f"{sorted(batch)}")
            images = batch[image_key]
            texts = batch[text_key] if text_key is not None else None
            tokens = ({k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
                      if texts is None else None)
        elif isinstance(batch, (tuple, list)) and len(batch) == 2:
            images, texts = batch
            tokens = None
        else:
            raise IncompatibleComponentError(
                "image-text batches must be dicts {'image': ..., 'text': ...} or "
                f"(images, texts) pairs; got {type(batch).__name__}")
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise IncompatibleComponentError(
                "images must be one float tensor [batch, 3, height, width], already "
                f"preprocessed; got {getattr(images, 'shape', type(images).__name__)}")
        expected = self.image_size
        if expected is not None and tuple(images.shape[-2:]) != tuple(expected):
            raise IncompatibleComponentError(
                f"model '{self.name}' takes {expected[0]}x{expected[1]} images, the batch has "
                f"{images.shape[-2]}x{images.shape[-1]}; resize the data (e.g. "
                "data.image_size) or build the model for this size")
        if tokens is None:
            if isinstance(texts, str):
                texts = [texts]
            texts = list(texts)
            if len(texts) != images.shape[0]:
                raise IncompatibleComponentError(
                    f"{images.shape[0]} images but {len(texts)} texts in one batch")
            tokens = self.tokenize(texts)
        device = self.device
        out = {"pixel_values": images.to(device=device, dtype=torch.float32)}
        out.update({k: v.to(device) for k, v in tokens.items()})
        return out

    def _embeddings(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(batch["pixel_values"]), self.encode_text(batch)

    def per_example_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """The symmetric contrastive (InfoNCE) loss of each image-text pair, ``[batch]``.

        Pair ``i`` is scored against the other pairs of its batch (or of its group of
        ``contrast_size``): ``0.5 * (CE(image_i -> texts, i) + CE(text_i -> images, i))``
        with the model's learned logit scale (see :func:`symmetric_contrastive_loss`). So
        the loss of an example depends on the rest of its batch: the same pair gets a
        higher loss among more (or more similar) negatives. A batch of one pair has no
        negatives and raises :class:`~erasus.errors.IncompatibleComponentError`.
        """
        image, text = self._embeddings(batch)
        return symmetric_contrastive_loss(image, text, self.logit_scale,
                                          self.params.contrast_size)

    def outputs(self, batch: dict[str, Any], *, features: bool = False
                ) -> dict[str, torch.Tensor]:
        """``loss`` per pair and ``similarity`` (the cosine similarity of each image with
        its own text, which does not depend on the batch); with ``features=True`` also
        ``features`` (image embeddings, L2-normalised) and ``text_features``."""
        import torch.nn.functional as F

        image, text = self._embeddings(batch)
        img, txt = F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1)
        out = {"loss": symmetric_contrastive_loss(image, text, self.logit_scale,
                                                  self.params.contrast_size),
               "similarity": (img * txt).sum(-1)}
        if features:
            out["features"] = img
            out["text_features"] = txt
        return out

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        """The image embeddings in the joint image-text space, L2-normalised, ``[B, D]``."""
        import torch.nn.functional as F

        return F.normalize(self.encode_image(batch["pixel_values"]).float(), dim=-1)

    def text_features(self, batch: dict[str, Any]) -> torch.Tensor:
        """The text embeddings in the joint image-text space, L2-normalised, ``[B, D]``."""
        import torch.nn.functional as F

        return F.normalize(self.encode_text(batch).float(), dim=-1)
