"""The ``sequence_classification`` model adapter: a Hugging Face text classifier (BERT-style)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from erasus.adapters import ModelAdapter, ModelParams
from erasus.errors import IncompatibleComponentError
from pydantic import Field

from erasus_llm.masked_lm import _FEED_FORWARD, BERT, SEP_TOKEN, TINY_BERT

if TYPE_CHECKING:
    import torch
    from erasus.adapters import TinyProblem
    from erasus.data import DataInfo

__all__ = ["SequenceClassificationAdapter", "SequenceClassificationParams"]

CLS_TOKEN = "[CLS]"


def _bert_template(tokenizer: Any) -> None:
    """``[CLS] text [SEP]`` (and ``[CLS] a [SEP] b [SEP]`` for pairs), as BERT encodes."""
    from tokenizers.processors import TemplateProcessing

    special = [(t, tokenizer.convert_tokens_to_ids(t)) for t in (CLS_TOKEN, SEP_TOKEN)]
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{CLS_TOKEN} $A {SEP_TOKEN}", pair=f"{CLS_TOKEN} $A {SEP_TOKEN} $B:1 {SEP_TOKEN}:1",
        special_tokens=special)


class SequenceClassificationParams(ModelParams):
    """Parameters of the sequence classification adapter."""

    path: str | None = Field(None, description="A local directory holding a Hugging Face "
                             "sequence classifier and its tokenizer; unset: a fresh tiny BERT.")
    config: dict[str, Any] | None = Field(None, description="BertConfig overrides for a "
                                          "fresh model (hidden 64, 2 layers by default).")
    num_labels: int | None = Field(None, ge=2, description="Number of labels of a fresh "
                                   "model; unset: the data set's number of classes.")
    tokenizer_vocab_size: int = Field(512, ge=260, description="Size of the offline BPE "
                                      "trained for a fresh model.")
    max_length: int = Field(128, ge=2, description="Longest text in tokens (longer ones are "
                            "truncated).")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weight dtype of the loaded or built model (losses are "
        "computed in float32).")
    trust_remote_code: bool = Field(False, description="Allow model code from the directory.")


class SequenceClassificationAdapter(ModelAdapter):
    """A text classifier (``AutoModelForSequenceClassification``, e.g. BERT).

    Items are ``{"text": str, "label": int}`` (optionally ``"text_pair"``); the loss is
    the cross-entropy of the label, as in BERT's fine-tuning for sequence classification
    (Devlin et al. 2019). It is a classifier: the classification strategies, selectors
    and metrics of the core (accuracy, MIA efficacy, random labels, SCRUB, SalUn...) run
    on it as on an image classifier.
    """

    name = "sequence_classification"
    modalities = ("classification",)
    needs = frozenset()
    Params = SequenceClassificationParams
    paper = BERT

    def __init__(self, model: torch.nn.Module,
                 params: SequenceClassificationParams | None = None, tokenizer: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(model, params, **kwargs)
        if tokenizer is None:
            raise IncompatibleComponentError(
                "model 'sequence_classification' needs the model's tokenizer")
        self.tokenizer = tokenizer

    @classmethod
    def wrap(cls, obj: Any, params: SequenceClassificationParams | None = None
             ) -> SequenceClassificationAdapter:
        """Wrap a ``(model, tokenizer)`` pair the user holds (``Unlearner((model, tok))``)."""
        if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
            raise IncompatibleComponentError(
                "model 'sequence_classification' wraps a (model, tokenizer) pair: the model "
                "alone cannot turn texts into token ids")
        model, tokenizer = obj
        return cls(model, params or SequenceClassificationParams(), tokenizer=tokenizer)

    @classmethod
    def build(cls, params: SequenceClassificationParams, info: DataInfo | None = None
              ) -> SequenceClassificationAdapter:
        """The model at ``params.path``, or a fresh tiny BERT with an offline BPE."""
        if params.path:
            return cls.load(params.path, params, info)
        num_labels = params.num_labels or (info.num_classes if info is not None else None)
        if not num_labels:
            raise IncompatibleComponentError(
                "model 'sequence_classification' needs the number of labels to build a "
                "fresh classifier: set model.num_labels or use a data set that knows its "
                "classes (text_classification)")
        from transformers import AutoConfig, AutoModelForSequenceClassification

        from erasus_llm._facts import corpus
        from erasus_llm._tokenizer import bpe_tokenizer
        from erasus_llm.causal_lm import _torch_dtype
        from erasus_llm.text_classification import TEMPLATES

        texts = [*corpus(), *(t.replace("{", "").replace("}", "") for t in TEMPLATES)]
        tokenizer = bpe_tokenizer(texts, params.tokenizer_vocab_size)
        tokenizer.add_special_tokens({"cls_token": CLS_TOKEN, "sep_token": SEP_TOKEN})
        _bert_template(tokenizer)
        overrides = {**TINY_BERT, **(params.config or {})}
        model_type = overrides.pop("model_type", "bert")
        config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer),
                                      pad_token_id=tokenizer.pad_token_id,
                                      num_labels=int(num_labels), **overrides)
        model = AutoModelForSequenceClassification.from_config(
            config, dtype=_torch_dtype(params.dtype))
        model.eval()  # from_config leaves dropout on; from_pretrained does not
        params = params.model_copy(update={"num_labels": int(num_labels)})
        return cls(model, params, tokenizer=tokenizer)

    @classmethod
    def load(cls, path: str | Path, params: SequenceClassificationParams | None = None,
             info: DataInfo | None = None) -> SequenceClassificationAdapter:
        """A sequence classifier and its tokenizer from a local directory (safetensors)."""
        from transformers import AutoModelForSequenceClassification

        from erasus_llm.causal_lm import hf_load_pretrained, saved_params

        params = params or saved_params(cls, Path(path))
        model, tokenizer = hf_load_pretrained(
            AutoModelForSequenceClassification, path, params, cls.name,
            "holding a sequence classifier, e.g. BERT, with safetensors weights and its "
            "tokenizer")
        adapter = cls(model, params, tokenizer=tokenizer)
        if info is not None and info.num_classes and info.num_classes != adapter.num_classes:
            raise IncompatibleComponentError(
                f"model 'sequence_classification' at '{path}' predicts "
                f"{adapter.num_classes} labels but the data set has {info.num_classes}")
        return adapter

    def save(self, directory: str | Path) -> None:
        """Write the Hugging Face directory (safetensors, config, tokenizer) + adapter.json."""
        from erasus_llm.causal_lm import hf_save

        hf_save(self, directory)

    @property
    def num_classes(self) -> int:
        return int(self.model.config.num_labels)

    def prepare_batch(self, batch: Any) -> dict[str, Any]:
        """``input_ids``, ``attention_mask`` and ``labels`` of ``{"text", "label"}`` items."""
        import torch

        if isinstance(batch, (list, tuple)):
            if not all(isinstance(b, dict) for b in batch):
                raise IncompatibleComponentError(
                    "model 'sequence_classification' needs {'text', 'label'} items")
            batch = {key: [b.get(key) for b in batch] for key in ("text", "label",
                                                                  "text_pair")}
        if not (isinstance(batch, dict) and "text" in batch and "label" in batch):
            raise IncompatibleComponentError(
                "model 'sequence_classification' needs {'text', 'label'} items (the "
                "text_classification data set gives them)")
        texts = batch["text"]
        texts = [texts] if isinstance(texts, str) else list(texts)
        pairs = batch.get("text_pair")
        pairs = None if pairs is None or all(p is None for p in pairs) else list(pairs)
        enc = self.tokenizer(texts, pairs, padding=True, truncation=True,
                             max_length=self.params.max_length, return_tensors="pt")
        labels = torch.as_tensor(batch["label"]).long().reshape(-1)
        if len(labels) != len(texts):
            raise IncompatibleComponentError(
                f"model 'sequence_classification': {len(texts)} texts but {len(labels)} "
                "labels in a batch")
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if len(bad):
            raise IncompatibleComponentError(
                f"model 'sequence_classification' predicts {self.num_classes} labels; got "
                f"label {int(bad[0])}")
        dev = self.device
        return {"input_ids": enc["input_ids"].to(dev),
                "attention_mask": enc["attention_mask"].to(dev), "labels": labels.to(dev)}

    def _forward(self, batch: dict[str, Any], *, hidden: bool = False) -> Any:
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          output_hidden_states=hidden)

    def logits(self, batch: dict[str, Any]) -> torch.Tensor:
        return self._forward(batch).logits.float()

    def per_example_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Cross-entropy of each text's label, shape ``[batch]``."""
        import torch.nn.functional as F

        return F.cross_entropy(self.logits(batch), batch["labels"], reduction="none")

    def outputs(self, batch: dict[str, Any], *, features: bool = False
                ) -> dict[str, torch.Tensor]:
        """``loss``, ``logits``, ``labels`` (and ``features``) from one forward pass."""
        import torch.nn.functional as F

        out = self._forward(batch, hidden=features)
        logits = out.logits.float()
        result = {"logits": logits, "labels": batch["labels"],
                  "loss": F.cross_entropy(logits, batch["labels"], reduction="none")}
        if features:
            from erasus_llm.causal_lm import _mean_pool

            result["features"] = _mean_pool(out.hidden_states[-1], batch["attention_mask"])
        return result

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        """The last hidden state mean-pooled over non-padding tokens."""
        from erasus_llm.causal_lm import _mean_pool

        out = self._forward(batch, hidden=True)
        return _mean_pool(out.hidden_states[-1], batch["attention_mask"])

    @staticmethod
    def labels(batch: dict[str, Any]) -> torch.Tensor:
        return batch["labels"]

    @staticmethod
    def with_labels(batch: dict[str, Any], labels: torch.Tensor) -> dict[str, Any]:
        """A copy of ``batch`` with other labels (for relabelling strategies)."""
        return {**batch, "labels": labels}

    def parameter_groups(self) -> dict[str, list[str]]:
        """``all``, ``head`` (the classification head) and ``body`` (the rest), plus the
        transformer groups ``embeddings``, ``attention``, ``mlp`` and ``layer.<i>``."""
        from erasus_llm.causal_lm import hf_parameter_groups

        groups = hf_parameter_groups(self.model, _FEED_FORWARD)
        groups.pop("lm_head", None)
        names = groups["all"]
        prefix = getattr(self.model, "base_model_prefix", "")
        head = [n for n in names if not (prefix and n.startswith(prefix + "."))]
        if head and len(head) < len(names):
            groups["head"] = head
            groups["body"] = [n for n in names if n not in set(head)]
        return groups

    def reset_parameters(self) -> None:
        """Re-initialise every weight with the model's own init scheme (``init_weights``)."""
        from erasus_llm.causal_lm import hf_reset_parameters

        hf_reset_parameters(self.model, self.name)

    @classmethod
    def tiny_problem(cls, seed: int = 0) -> TinyProblem:
        """A tiny BERT classifier trained on synthetic profiles until it knows their labels.

        The labels are drawn at random per person, so the forget people's labels are known
        only by memorisation (a model retrained without them is at chance on them).
        """
        import torch
        from erasus.adapters import TinyProblem

        from erasus_llm.text_classification import TextClassification, TextClassificationParams
        from erasus_llm.tiny import train_causal_lm

        splits = TextClassification(TextClassificationParams(
            people=16, holdout_people=6, forget={"kind": "person", "fraction": 0.125})
        ).load(seed=seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            adapter = cls.build(SequenceClassificationParams(), splits.info)
            train_causal_lm(adapter, splits.train, steps=200, seed=seed)
        return TinyProblem(adapter, splits.forget, splits.retain, splits.test, info=splits.info)
