"""The ModelAdapter base class: one model of one family, seen through a uniform interface.

Every strategy and metric talks to models only through an adapter, so a generic strategy
such as gradient ascent runs on any modality whose adapter gives a per-example loss.

Batches: a data loader yields whatever the dataset's collate function produces (a tuple,
a list or a Hugging Face style dict). :meth:`ModelAdapter.prepare_batch` turns that into
the adapter's canonical ``dict`` on the adapter's device; strategies and metrics only see
canonical batches. The training loop adds the dataset indices of the batch's examples
under the key ``"index"``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from erasus.components import Component, Params
from erasus.errors import IncompatibleComponentError

if TYPE_CHECKING:
    import torch

    from erasus.data import DataInfo

__all__ = ["ADAPTER_FILE", "WEIGHTS_FILE", "ModelAdapter", "ModelParams", "TinyProblem"]

WEIGHTS_FILE = "model.safetensors"
ADAPTER_FILE = "adapter.json"

Batch = dict[str, Any]


class ModelParams(Params):
    """Parameters every model adapter accepts."""

    path: str | None = None
    """Directory of a saved model to load (written by ``save``); ``None`` builds a fresh one."""


class TinyProblem:
    """A tiny trained model of one family and its data, for conformance tests."""

    def __init__(self, adapter: ModelAdapter, forget: Any, retain: Any, test: Any,
                 collate_fn: Any = None, info: DataInfo | None = None,
                 extra: dict[str, Any] | None = None,
                 strategy_params: dict[str, dict[str, Any]] | None = None) -> None:
        self.adapter = adapter
        self.forget = forget
        self.retain = retain
        self.test = test
        self.collate_fn = collate_fn
        self.info = info
        self.extra = dict(extra or {})
        #: Per-strategy settings that suit this family (strategy name -> parameters), e.g.
        #: a smaller learning rate for ``finetune`` on a transformer; the conformance
        #: suites apply them under any explicit parameters.
        self.strategy_params = dict(strategy_params or {})
        #: The training record of ``adapter``'s training, when it was trained with one
        #: (:func:`erasus.testing.tiny.record_training`), and each forget example's index
        #: in that training set.
        self.record: Any = None
        self.forget_train_indices: list[int] | None = None


class ModelAdapter(Component):
    """Base class of model adapters. Subclasses set ``name``, ``modalities`` and ``paper``."""

    Params: ClassVar[type[Params]] = ModelParams
    paper = None
    #: Whether ``path`` may also be a Hugging Face hub id (``owner/name``), not only a
    #: local directory; the config check then lets hub-id-like strings through.
    accepts_hub_ids: ClassVar[bool] = False
    #: Whether ``path`` may also be ``package:NAME``, the directory of an installed Python
    #: package that ships weights (resolved by the adapter's ``load``, which reports a
    #: missing package); the config check then lets such paths through.
    accepts_package_paths: ClassVar[bool] = False
    #: The smallest batch the per-example loss is defined on (2 for contrastive models,
    #: whose loss needs a partner); the loops merge a shorter last batch into the previous.
    min_batch_size: ClassVar[int] = 1

    def __init__(self, model: torch.nn.Module, params: Params | None = None, **kwargs: Any
                 ) -> None:
        super().__init__(params, **kwargs)
        self.model = model

    @property
    def quantization(self) -> str | None:
        """The weight quantization the model is loaded with (e.g. ``"nf4"``), from the
        adapter's ``quantization`` parameter; ``None``: dense weights. Quantized weights
        cannot be trained or edited: only a strategy that trains adapters on the frozen
        base (``Strategy.trains_adapters``: lora) may unlearn such a model."""
        return getattr(self.params, "quantization", None)

    # -- construction and persistence ------------------------------------------------
    @classmethod
    def wrap(cls, obj: Any, params: Params | None = None) -> ModelAdapter:
        """Wrap an object the user already holds (``Unlearner(model, ...)``).

        The default takes a ``torch.nn.Module``; adapters whose models come with more parts
        (a tokenizer, a noise scheduler) override this to accept their family's object (a
        pipeline, a ``(model, tokenizer)`` pair...) or raise saying what they accept.
        """
        return cls(obj, params or cls.Params())

    @classmethod
    def build(cls, params: Params, info: DataInfo | None = None) -> ModelAdapter:
        """A freshly initialised model for ``params`` (and the data's shape, when given)."""
        raise IncompatibleComponentError(
            f"model adapter '{cls.name}' cannot build a fresh model; give model.path"
        )

    @classmethod
    def load(cls, path: str | Path, params: Params | None = None,
             info: DataInfo | None = None) -> ModelAdapter:
        """Load a model saved by :meth:`save` (weights from safetensors, never pickle)."""
        from safetensors.torch import load_model

        path = Path(path)
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"no {WEIGHTS_FILE} in model directory {path}")
        if params is None:
            meta_file = path / ADAPTER_FILE
            meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
            params = cls.Params(**meta.get("params", {}))
        adapter = cls.build(params, info)
        load_model(adapter.model, str(weights), device="cpu")
        return adapter

    def save(self, directory: str | Path) -> None:
        """Write the weights as safetensors and the adapter's name and params as JSON."""
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # save_model, not save_file: it writes tied weights (a shared embedding) once
        save_model(self.model, str(directory / WEIGHTS_FILE))
        params = self.params.model_dump(mode="json")
        params.pop("path", None)
        (directory / ADAPTER_FILE).write_text(
            json.dumps({"adapter": self.name, "params": params}, indent=2) + "\n")

    def clone(self) -> ModelAdapter:
        """An independent deep copy (the frozen original or reference model, say)."""
        return copy.deepcopy(self)

    def reset_parameters(self) -> None:
        """Re-initialise every weight, as for training from scratch (uses the torch RNG).

        Every parameter must belong to a module with its own ``reset_parameters``;
        otherwise this raises instead of leaving some weights trained.
        """
        uncovered = []
        resets = []
        for mname, module in self.model.named_modules():
            own = [n for n, _ in module.named_parameters(recurse=False)]
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                resets.append(reset)
            elif own:
                uncovered += [f"{mname}.{n}" if mname else n for n in own]
        if uncovered:
            raise IncompatibleComponentError(
                f"cannot re-initialise parameters {', '.join(uncovered[:5])}"
                f"{' ...' if len(uncovered) > 5 else ''}: their modules have no "
                "reset_parameters(); give those modules one, or override "
                f"{type(self).__name__}.reset_parameters")
        for reset in resets:
            reset()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> ModelAdapter:
        self.model.to(device)
        return self

    # -- the interface strategies and metrics use -------------------------------------
    def prepare_batch(self, batch: Any) -> Batch:
        """The canonical dict form of a collated batch, on this adapter's device."""
        raise NotImplementedError

    def per_example_loss(self, batch: Batch) -> torch.Tensor:
        """The training loss of each example in the batch, shape ``[batch]``.

        For most families an example's loss depends on that example only; for contrastive
        models (CLIP) it depends on the rest of its batch, so the evaluation batch size is
        then part of what loss-based metrics measure.
        """
        raise NotImplementedError

    def token_losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss of each target token of each example: ``(losses, mask)``, ``[batch, T]``.

        An example's target ``y`` is what its loss scores: one label for a classifier, the
        answer tokens for a language model. ``losses[i, t]`` is the loss of target token
        ``t`` of example ``i`` where ``mask[i, t]`` is true (zero elsewhere), and the mean
        of an example's masked losses is its :meth:`per_example_loss`. For likelihood
        losses, ``-(losses * mask).sum(1)`` is ``log p(y|x)`` and ``mask.sum(1)`` the target
        length ``|y|`` (what NPO, SimNPO and WGA need).

        The default counts the whole example as ONE target (``T = 1``, ``|y| = 1``): right
        for classifiers and for losses that are not averaged over tokens (a diffusion
        model's denoising error). An adapter whose per-example loss is a mean over several
        target tokens must override this.
        """
        import torch

        loss = self.per_example_loss(batch)
        return loss.unsqueeze(1), torch.ones_like(loss, dtype=torch.bool).unsqueeze(1)

    def outputs(self, batch: Batch, *, features: bool = False) -> dict[str, torch.Tensor]:
        """Everything metrics need from one forward pass: at least ``loss`` per example.

        Classifier-like adapters add ``logits`` and ``labels``; with ``features=True``,
        ``features`` (one vector per example).
        """
        return {"loss": self.per_example_loss(batch)}

    def features(self, batch: Batch) -> torch.Tensor:
        """One feature vector per example (the penultimate layer, an embedding...)."""
        raise IncompatibleComponentError(f"model adapter '{self.name}' gives no features")

    def parameter_groups(self) -> dict[str, list[str]]:
        """Named groups of parameter names (``"all"`` at least) for methods that touch a part."""
        return {"all": [n for n, _ in self.model.named_parameters()]}

    @staticmethod
    def batch_size(batch: Batch) -> int:
        """The number of examples in a canonical batch."""
        index = batch.get("index")
        if index is not None:
            return len(index)
        for value in batch.values():
            if hasattr(value, "shape") and len(value.shape) > 0:
                return int(value.shape[0])
        raise ValueError("cannot tell the batch size of an empty batch")

    # -- testing ------------------------------------------------------------------------
    @classmethod
    def tiny_problem(cls, seed: int = 0) -> TinyProblem:
        """A tiny trained model of this family and its forget/retain/test data (tests)."""
        raise NotImplementedError(
            f"model adapter '{cls.name}' has no tiny_problem(); the conformance suites need one"
        )
