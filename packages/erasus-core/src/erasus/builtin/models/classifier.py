"""The generic classifier adapter: any ``torch.nn.Module`` that maps inputs to logits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erasus.adapters import ModelAdapter, ModelParams, TinyProblem
from erasus.errors import IncompatibleComponentError

if TYPE_CHECKING:
    import torch

    from erasus.data import DataInfo

__all__ = ["ClassifierAdapter", "ClassifierParams", "inputs_and_labels"]

_INPUT_KEYS = ("inputs", "pixel_values", "input", "x", "image", "images", "features")
_LABEL_KEYS = ("labels", "label", "y", "target", "targets")


def inputs_and_labels(batch: Any, model: str, input_keys: tuple[str, ...] = _INPUT_KEYS,
                      label_keys: tuple[str, ...] = _LABEL_KEYS) -> tuple[Any, Any]:
    """``(inputs, labels)`` of a collated ``(inputs, labels)`` tuple or labelled dict batch.

    Raises:
        IncompatibleComponentError: naming ``model`` and the keys it looks for.
    """
    if isinstance(batch, dict):
        x_key = next((k for k in input_keys if k in batch), None)
        y_key = next((k for k in label_keys if k in batch), None)
        if x_key is None or y_key is None:
            raise IncompatibleComponentError(
                f"{model} batches need an input key ({', '.join(input_keys)}) and a label "
                f"key ({', '.join(label_keys)}); got keys {sorted(batch)}")
        return batch[x_key], batch[y_key]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise IncompatibleComponentError(
        f"{model} batches must be (inputs, labels) tuples or dicts with inputs and labels; "
        f"got {type(batch).__name__}")


class ClassifierParams(ModelParams):
    """Parameters of the classifier adapter."""

    arch: Literal["linear", "mlp", "small_cnn", "resnet"] = Field(
        "small_cnn", description="Zoo network to build when no model is given or loaded "
        "('linear': logistic / softmax regression on the flattened input, what "
        "certified_training and certified_removal need).")
    hidden: int = Field(64, ge=1, description="Width of the penultimate (feature) layer "
                        "(not used by 'linear').")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the last layer.")
    num_classes: int | None = Field(
        None, ge=2, description="Number of classes (default: from the data set).")
    input_shape: list[int] | None = Field(
        None, description="Shape of one input (default: from the data set).")
    ensemble: int = Field(
        1, ge=1, description="Number of member networks: more than 1 builds an "
        "erasus.ensemble.Ensemble of that many networks of 'arch' whose prediction "
        "aggregates theirs (SISA trains one member per shard).")
    aggregation: Literal["softmax_mean", "majority_vote"] = Field(
        "softmax_mean", description="How an ensemble combines its members: the mean of their "
        "softmax outputs, or a majority vote of their predicted classes (ties to the higher "
        "mean probability).")


class ClassifierAdapter(ModelAdapter):
    """Any torch classifier: inputs to logits, cross-entropy per example.

    Batches may be ``(inputs, labels)`` tuples or dicts with an input key (``inputs``,
    ``pixel_values``, ``x``...) and a label key (``labels``, ``label``, ``y``...).
    Features are the penultimate activations: the model's ``features(x)`` method when it
    has one (every zoo network does).
    """

    name = "classifier"
    modalities = ("classification",)
    Params = ClassifierParams
    paper = None

    @classmethod
    def build(cls, params: ClassifierParams, info: DataInfo | None = None
              ) -> ClassifierAdapter:
        from erasus.builtin.models.zoo import build_network

        num_classes = params.num_classes or (info.num_classes if info else None)
        shape = params.input_shape or (list(info.input_shape) if info and info.input_shape
                                       else None)
        if num_classes is None or shape is None:
            raise IncompatibleComponentError(
                "model 'classifier' needs num_classes and input_shape to build a network; "
                "set model.num_classes and model.input_shape or use a data set that gives them")
        def network_of_arch() -> Any:
            return build_network(params.arch, tuple(shape), int(num_classes),
                                 hidden=params.hidden, dropout=params.dropout)

        if params.ensemble > 1:
            from erasus.ensemble import Ensemble

            network = Ensemble([network_of_arch() for _ in range(params.ensemble)],
                               params.aggregation)
        else:
            network = network_of_arch()
        params = params.model_copy(update={"num_classes": int(num_classes),
                                           "input_shape": [int(d) for d in shape]})
        return cls(network, params)

    @property
    def num_classes(self) -> int:
        if self.params.num_classes:
            return int(self.params.num_classes)
        head = getattr(self.model, "head", None)
        if head is not None and hasattr(head, "out_features"):
            return int(head.out_features)
        raise IncompatibleComponentError(
            "cannot tell the number of classes of this classifier; pass num_classes")

    def prepare_batch(self, batch: Any) -> dict[str, Any]:
        x, y = inputs_and_labels(batch, "classifier")
        device = self.device
        return {"inputs": x.to(device), "labels": y.to(device).long()}

    def logits(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.model(batch["inputs"])

    def per_example_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(self.logits(batch), batch["labels"], reduction="none")

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        fn = getattr(self.model, "features", None)
        if not callable(fn):
            raise IncompatibleComponentError(
                "this classifier has no features(x) method; define one that returns the "
                "penultimate activations, or use a zoo arch (mlp, small_cnn, resnet)")
        return fn(batch["inputs"])

    def outputs(self, batch: dict[str, Any], *, features: bool = False
                ) -> dict[str, torch.Tensor]:
        import torch.nn.functional as F

        out: dict[str, torch.Tensor] = {}
        fn = getattr(self.model, "features", None)
        head = getattr(self.model, "head", None)
        if features and callable(fn) and head is not None:
            feats = fn(batch["inputs"])
            logits = head(feats)  # dropout is inactive in eval mode
            out["features"] = feats
        else:
            logits = self.logits(batch)
            if features:
                out["features"] = self.features(batch)
        out["logits"] = logits
        out["labels"] = batch["labels"]
        out["loss"] = F.cross_entropy(logits, batch["labels"], reduction="none")
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
        groups = {"all": names}
        head = [n for n in names if n.startswith("head.")]
        if head:
            groups["head"] = head
            groups["body"] = [n for n in names if not n.startswith("head.")]
        return groups

    @classmethod
    def tiny_problem(cls, seed: int = 0) -> TinyProblem:
        from erasus.testing.tiny import tiny_classifier_problem

        return tiny_classifier_problem(seed=seed)
