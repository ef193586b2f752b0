"""The ``masked_lm`` model adapter: a Hugging Face masked LM (BERT-style) on QA pairs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from erasus.adapters import ModelAdapter, ModelParams
from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from pydantic import Field

if TYPE_CHECKING:
    import torch
    from erasus.adapters import TinyProblem
    from erasus.data import DataInfo

__all__ = ["MaskedLMAdapter", "MaskedLMParams", "masked_token_nll"]

IGNORE_INDEX = -100
MASK_TOKEN, SEP_TOKEN = "[MASK]", "[SEP]"
#: The fresh model's BertConfig (about 0.1M parameters without the embeddings). Without
#: dropout, like the tiny causal LMs: training and evaluation then see the same function.
TINY_BERT: dict[str, Any] = {"hidden_size": 64, "num_hidden_layers": 2,
                             "num_attention_heads": 2, "intermediate_size": 128,
                             "max_position_embeddings": 128, "hidden_dropout_prob": 0.0,
                             "attention_probs_dropout_prob": 0.0}
# A BERT layer's feed-forward children are ``intermediate`` and ``output``.
_FEED_FORWARD = re.compile(r"mlp|ffn|feed_?forward|intermediate|^output$", re.IGNORECASE)

BERT = Paper(
    title="BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding",
    authors="Jacob Devlin, Ming-Wei Chang, Kenton Lee, Kristina Toutanova",
    year=2019, url="https://arxiv.org/abs/1810.04805", venue="NAACL")


class MaskedLMParams(ModelParams):
    """Parameters of the masked LM adapter."""

    path: str | None = Field(None, description="A local directory holding a Hugging Face "
                             "masked LM and its tokenizer; unset: a fresh tiny BERT.")
    config: dict[str, Any] | None = Field(None, description="BertConfig overrides for a "
                                          "fresh model (hidden 64, 2 layers by default).")
    tokenizer_vocab_size: int = Field(512, ge=260, description="Size of the offline BPE "
                                      "trained for a fresh model.")
    max_length: int = Field(128, ge=3, description="Longest sequence in tokens.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weight dtype of the loaded or built model (losses are "
        "computed in float32).")
    trust_remote_code: bool = Field(False, description="Allow model code from the directory.")


def masked_token_nll(logits: torch.Tensor, labels: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """NLL of each masked (labelled) token, no shift, and the label mask; ``[batch, T]``."""
    import torch.nn.functional as F

    nll = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(),
                          ignore_index=IGNORE_INDEX, reduction="none").view_as(labels)
    return nll, labels != IGNORE_INDEX


class MaskedLMAdapter(ModelAdapter):
    """A masked LM (``AutoModelForMaskedLM``, e.g. BERT) on question/answer pairs.

    An item ``{"question", "answer"}`` becomes ``question [SEP] [MASK]*len(answer)``; the
    model predicts the answer tokens at the masked positions (Devlin et al. 2019's masked
    LM objective restricted to the answer), so the per-example loss is the mean NLL of the
    answer tokens and the question never counts.
    """

    name = "masked_lm"
    modalities = ("text",)
    needs = frozenset()
    Params = MaskedLMParams
    paper = BERT

    def __init__(self, model: torch.nn.Module, params: MaskedLMParams | None = None,
                 tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(model, params, **kwargs)
        if tokenizer is None or tokenizer.mask_token_id is None:
            raise IncompatibleComponentError(
                "model 'masked_lm' needs the model's tokenizer, with a mask token")
        self.tokenizer = tokenizer
        self._sep = tokenizer.sep_token_id
        if self._sep is None:
            self._sep = tokenizer.eos_token_id
        self._pad = tokenizer.pad_token_id or 0

    @classmethod
    def wrap(cls, obj: Any, params: MaskedLMParams | None = None) -> MaskedLMAdapter:
        """Wrap a ``(model, tokenizer)`` pair the user holds (``Unlearner((model, tok))``)."""
        if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
            raise IncompatibleComponentError(
                "model 'masked_lm' wraps a (model, tokenizer) pair: the model alone cannot "
                "turn questions and answers into token ids")
        model, tokenizer = obj
        return cls(model, params or MaskedLMParams(), tokenizer=tokenizer)

    @classmethod
    def build(cls, params: MaskedLMParams, info: DataInfo | None = None) -> MaskedLMAdapter:
        """The model at ``params.path``, or a fresh tiny BERT with an offline BPE."""
        if params.path:
            return cls.load(params.path, params, info)
        from transformers import AutoConfig, AutoModelForMaskedLM

        from erasus_llm._facts import corpus
        from erasus_llm._tokenizer import bpe_tokenizer
        from erasus_llm.causal_lm import _torch_dtype

        tokenizer = bpe_tokenizer(corpus(), params.tokenizer_vocab_size)
        tokenizer.add_special_tokens({"mask_token": MASK_TOKEN, "sep_token": SEP_TOKEN})
        overrides = {**TINY_BERT, **(params.config or {})}
        model_type = overrides.pop("model_type", "bert")
        config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer),
                                      pad_token_id=tokenizer.pad_token_id, **overrides)
        model = AutoModelForMaskedLM.from_config(config, dtype=_torch_dtype(params.dtype))
        model.eval()  # from_config leaves dropout on; from_pretrained does not
        return cls(model, params, tokenizer=tokenizer)

    @classmethod
    def load(cls, path: str | Path, params: MaskedLMParams | None = None,
             info: DataInfo | None = None) -> MaskedLMAdapter:
        """A masked LM and its tokenizer from a local directory (safetensors only)."""
        from transformers import AutoModelForMaskedLM

        from erasus_llm.causal_lm import hf_load_pretrained, saved_params

        params = params or saved_params(cls, Path(path))
        model, tokenizer = hf_load_pretrained(
            AutoModelForMaskedLM, path, params, cls.name,
            "holding a masked LM, e.g. BERT, with safetensors weights and its tokenizer")
        return cls(model, params, tokenizer=tokenizer)

    def save(self, directory: str | Path) -> None:
        """Write the Hugging Face directory (safetensors, config, tokenizer) + adapter.json."""
        from erasus_llm.causal_lm import hf_save

        hf_save(self, directory)

    def prepare_batch(self, batch: Any) -> dict[str, Any]:
        """``input_ids``, ``attention_mask``, ``labels``: answer masked, labelled only there."""
        if isinstance(batch, (list, tuple)):
            batch = {"question": [b["question"] for b in batch],
                     "answer": [b["answer"] for b in batch]}
        if not (isinstance(batch, dict) and "question" in batch and "answer" in batch):
            raise IncompatibleComponentError(
                "model 'masked_lm' needs question/answer items")
        qs, ans = batch["question"], batch["answer"]
        if isinstance(qs, str):
            qs, ans = [qs], [ans]
        return self.cloze_batch(list(qs), [" " + a for a in ans])

    def cloze_batch(self, contexts: list[str], targets: list[str]) -> dict[str, Any]:
        """``context [SEP] [MASK]*len(target)`` per pair, labelled with the target tokens.

        The target text is tokenised as given (:meth:`prepare_batch` puts a space before
        an answer); long pairs lose target tokens from the end, then context tokens from
        the start.
        """
        import torch

        mask_id = self.tokenizer.mask_token_id
        rows = []
        for context, target in zip(contexts, targets, strict=True):
            q_ids = self.tokenizer(context, add_special_tokens=False)["input_ids"]
            a_ids = self.tokenizer(target, add_special_tokens=False)["input_ids"]
            if not a_ids:
                raise IncompatibleComponentError(
                    f"model 'masked_lm': the answer {target!r} to {context[:40]!r} has no "
                    "tokens, so it has no loss")
            a_ids = a_ids[: max(1, self.params.max_length - 2)]
            q_ids = q_ids[-max(1, self.params.max_length - 1 - len(a_ids)):]
            ids = [*q_ids, self._sep, *[mask_id] * len(a_ids)]
            labels = [IGNORE_INDEX] * (len(q_ids) + 1) + a_ids
            rows.append((ids, labels))
        width = max(len(i) for i, _ in rows)
        input_ids = torch.tensor([i + [self._pad] * (width - len(i)) for i, _ in rows])
        labels = torch.tensor([lab + [IGNORE_INDEX] * (width - len(lab)) for _, lab in rows])
        lengths = torch.tensor([len(i) for i, _ in rows])
        attention = (torch.arange(width)[None, :] < lengths[:, None]).long()
        dev = self.device
        return {"input_ids": input_ids.to(dev), "attention_mask": attention.to(dev),
                "labels": labels.to(dev)}

    def _forward(self, batch: dict[str, Any], *, hidden: bool = False) -> Any:
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          output_hidden_states=hidden)

    def token_losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """NLL of each masked answer token and the answer-token mask, ``[batch, T]``."""
        return masked_token_nll(self._forward(batch).logits, batch["labels"])

    def per_example_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Mean NLL of each example's answer tokens, shape ``[batch]``."""
        nll, mask = self.token_losses(batch)
        return nll.sum(1) / mask.sum(1)

    def outputs(self, batch: dict[str, Any], *, features: bool = False
                ) -> dict[str, torch.Tensor]:
        """``loss`` per example (and ``features``), from one forward pass."""
        out = self._forward(batch, hidden=features)
        nll, mask = masked_token_nll(out.logits, batch["labels"])
        result = {"loss": nll.sum(1) / mask.sum(1)}
        if features:
            from erasus_llm.causal_lm import _mean_pool

            result["features"] = _mean_pool(out.hidden_states[-1], batch["attention_mask"])
        return result

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        """The last hidden state mean-pooled over non-padding tokens."""
        from erasus_llm.causal_lm import _mean_pool

        out = self.model.base_model(input_ids=batch["input_ids"],
                                    attention_mask=batch["attention_mask"])
        return _mean_pool(out.last_hidden_state, batch["attention_mask"])

    def parameter_groups(self) -> dict[str, list[str]]:
        """``all``, ``embeddings``, ``attention``, ``mlp`` (a layer's ``intermediate`` and
        ``output``), ``lm_head`` (tied to the token embeddings) and ``layer.<i>``."""
        from erasus_llm.causal_lm import hf_parameter_groups

        return hf_parameter_groups(self.model, _FEED_FORWARD)

    def reset_parameters(self) -> None:
        """Re-initialise every weight with the model's own init scheme (``init_weights``)."""
        from erasus_llm.causal_lm import hf_reset_parameters

        hf_reset_parameters(self.model, self.name)

    @classmethod
    def tiny_problem(cls, seed: int = 0) -> TinyProblem:
        """A tiny BERT trained from scratch on synthetic facts until it knows them."""
        from erasus_llm.tiny import tiny_qa_problem

        return tiny_qa_problem(lambda: cls.build(MaskedLMParams()), seed, steps=400)
