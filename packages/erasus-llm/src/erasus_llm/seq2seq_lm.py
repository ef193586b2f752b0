"""The ``seq2seq_lm`` model adapter: a Hugging Face encoder-decoder LM (T5-style) on QA pairs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from erasus.adapters import ModelAdapter, ModelParams
from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from pydantic import Field

from erasus_llm.masked_lm import masked_token_nll

if TYPE_CHECKING:
    import torch
    from erasus.adapters import TinyProblem
    from erasus.data import DataInfo

__all__ = ["Seq2SeqLMAdapter", "Seq2SeqLMParams"]

IGNORE_INDEX = -100
#: The fresh model's T5Config (about 0.2M parameters without the embeddings), no dropout.
TINY_T5: dict[str, Any] = {"d_model": 64, "d_kv": 32, "d_ff": 128, "num_layers": 2,
                           "num_decoder_layers": 2, "num_heads": 2, "dropout_rate": 0.0,
                           "relative_attention_num_buckets": 8}

T5 = Paper(
    title="Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer",
    authors="Colin Raffel, Noam Shazeer, Adam Roberts, Katherine Lee, Sharan Narang, "
            "Michael Matena, Yanqi Zhou, Wei Li, Peter J. Liu",
    year=2020, url="https://arxiv.org/abs/1910.10683", venue="JMLR")

_GROUPS = {"attention": re.compile(r"SelfAttention|EncDecAttention|self_attn|encoder_attn"),
           "mlp": re.compile(r"DenseReluDense|\.fc\d|\.mlp\."),
           "encoder": re.compile(r"^encoder\."), "decoder": re.compile(r"^decoder\.")}


#: A parameter of encoder or decoder block i (T5's ``block``, BART's ``layers``).
_BLOCK = re.compile(r"^(?:model\.)?(encoder|decoder)\.(?:block|layers)\.(\d+)\.")


class Seq2SeqLMParams(ModelParams):
    """Parameters of the encoder-decoder LM adapter."""

    path: str | None = Field(None, description="A local directory holding a Hugging Face "
                             "seq2seq LM (T5, BART...) and its tokenizer; unset: a fresh "
                             "tiny T5.")
    config: dict[str, Any] | None = Field(None, description="T5Config overrides for a fresh "
                                          "model (d_model 64, 2+2 layers by default).")
    tokenizer_vocab_size: int = Field(512, ge=260, description="Size of the offline BPE "
                                      "trained for a fresh model.")
    prompt_template: str = Field("{question}", description="Encoder input made of an item's "
                                 "question ({question} is replaced), e.g. 'question: "
                                 "{question}' for T5's task prefixes.")
    max_length: int = Field(128, ge=2, description="Longest encoder input and longest "
                            "answer, in tokens.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weight dtype of the loaded or built model (losses are "
        "computed in float32).")
    trust_remote_code: bool = Field(False, description="Allow model code from the directory.")


class Seq2SeqLMAdapter(ModelAdapter):
    """An encoder-decoder LM (``AutoModelForSeq2SeqLM``, e.g. T5) on question/answer pairs.

    The question (through ``prompt_template``) is the encoder's input and the answer,
    with the tokenizer's EOS appended, the decoder's target, as in T5's text-to-text
    fine-tuning (Raffel et al. 2020): the per-example loss is the mean NLL of the answer
    tokens and the question is never a target. The LLM metrics read the decoder's
    per-token log-probabilities (one pass) and greedy generations from it; plain-text
    items (MUSE's raw corpora) need a causal LM and are refused.
    """

    name = "seq2seq_lm"
    modalities = ("text",)
    needs = frozenset()
    Params = Seq2SeqLMParams
    paper = T5

    def __init__(self, model: torch.nn.Module, params: Seq2SeqLMParams | None = None,
                 tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(model, params, **kwargs)
        if tokenizer is None or tokenizer.eos_token_id is None:
            raise IncompatibleComponentError(
                "model 'seq2seq_lm' needs the model's tokenizer, with an EOS token")
        if not getattr(model.config, "is_encoder_decoder", False):
            raise IncompatibleComponentError(
                f"model 'seq2seq_lm' needs an encoder-decoder model; "
                f"{type(model).__name__} is not one (use model causal_lm for decoder-only "
                "models)")
        self.tokenizer = tokenizer
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
            tokenizer.eos_token_id
        self.max_length = self.params.max_length

    @classmethod
    def wrap(cls, obj: Any, params: Seq2SeqLMParams | None = None) -> Seq2SeqLMAdapter:
        """Wrap a ``(model, tokenizer)`` pair the user holds (``Unlearner((model, tok))``)."""
        if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
            raise IncompatibleComponentError(
                "model 'seq2seq_lm' wraps a (model, tokenizer) pair: the model alone cannot "
                "turn questions and answers into token ids")
        model, tokenizer = obj
        return cls(model, params or Seq2SeqLMParams(), tokenizer=tokenizer)

    @classmethod
    def build(cls, params: Seq2SeqLMParams, info: DataInfo | None = None
              ) -> Seq2SeqLMAdapter:
        """The model at ``params.path``, or a fresh tiny T5 with an offline BPE."""
        if params.path:
            return cls.load(params.path, params, info)
        from transformers import AutoConfig, AutoModelForSeq2SeqLM

        from erasus_llm._facts import corpus
        from erasus_llm._tokenizer import bpe_tokenizer
        from erasus_llm.causal_lm import _torch_dtype

        tokenizer = bpe_tokenizer(corpus(), params.tokenizer_vocab_size)
        overrides = {**TINY_T5, **(params.config or {})}
        model_type = overrides.pop("model_type", "t5")
        special = tokenizer.eos_token_id  # one token is pad, EOS and the decoder start
        try:
            config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer),
                                          pad_token_id=special, eos_token_id=special,
                                          decoder_start_token_id=special, **overrides)
        except (ValueError, TypeError) as exc:
            raise IncompatibleComponentError(
                f"model 'seq2seq_lm' cannot build a '{model_type}' config from {overrides}: "
                f"{exc}") from None
        model = AutoModelForSeq2SeqLM.from_config(config, dtype=_torch_dtype(params.dtype))
        model.eval()
        return cls(model, params, tokenizer=tokenizer)

    @classmethod
    def load(cls, path: str | Path, params: Seq2SeqLMParams | None = None,
             info: DataInfo | None = None) -> Seq2SeqLMAdapter:
        """A seq2seq LM and its tokenizer from a local directory (safetensors only)."""
        from transformers import AutoModelForSeq2SeqLM

        from erasus_llm.causal_lm import hf_load_pretrained, saved_params

        params = params or saved_params(cls, Path(path))
        model, tokenizer = hf_load_pretrained(
            AutoModelForSeq2SeqLM, path, params, cls.name,
            "holding an encoder-decoder LM, e.g. T5, with safetensors weights and its "
            "tokenizer")
        return cls(model, params, tokenizer=tokenizer)

    def save(self, directory: str | Path) -> None:
        """Write the Hugging Face directory (safetensors, config, tokenizer) + adapter.json."""
        from erasus_llm.causal_lm import hf_save

        hf_save(self, directory)

    # -- batches -------------------------------------------------------------------------
    def prompt_ids(self, questions: list[str]) -> list[list[int]]:
        """The encoder input ids of each question (the prompt template applied)."""
        p: Seq2SeqLMParams = self.params  # type: ignore[assignment]
        texts = [p.prompt_template.replace("{question}", q) for q in questions]
        return [list(ids)[:p.max_length]
                for ids in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]

    def prepare_batch(self, batch: Any) -> dict[str, Any]:
        """``input_ids``/``attention_mask`` of the questions, ``labels`` of the answers."""
        if isinstance(batch, (list, tuple)):
            if not all(isinstance(b, dict) for b in batch):
                raise IncompatibleComponentError("model 'seq2seq_lm' needs question/answer "
                                                 "items")
            batch = {"question": [b.get("question") for b in batch],
                     "answer": [b.get("answer") for b in batch]}
        if not (isinstance(batch, dict) and "question" in batch and "answer" in batch):
            keys = ", ".join(sorted(batch)) if isinstance(batch, dict) else type(batch).__name__
            raise IncompatibleComponentError(
                f"model 'seq2seq_lm' needs question/answer items (got {keys}); plain text "
                "items need a causal LM (model causal_lm)")
        qs, ans = batch["question"], batch["answer"]
        if isinstance(qs, str):
            qs, ans = [qs], [ans]
        return self.pair_batch(self.prompt_ids(list(qs)), list(ans))

    def pair_batch(self, sources: list[list[int]], targets: list[str], *,
                   append_eos: bool = True) -> dict[str, Any]:
        """Encoder ``sources`` (token ids) with the target texts as decoder labels."""
        import torch

        rows = []
        for src, target in zip(sources, targets, strict=True):
            if not isinstance(target, str):
                raise IncompatibleComponentError(
                    f"model 'seq2seq_lm' needs string answers, got {type(target).__name__}")
            tgt = list(self.tokenizer(target, add_special_tokens=False)["input_ids"])
            if append_eos:
                tgt.append(self.tokenizer.eos_token_id)
            if not tgt:
                raise IncompatibleComponentError(
                    f"model 'seq2seq_lm': the answer {target!r} has no tokens to score")
            rows.append((list(src) or [self.tokenizer.eos_token_id],
                         tgt[:self.params.max_length]))
        width = max(len(s) for s, _ in rows)
        twidth = max(len(t) for _, t in rows)
        ids = torch.tensor([s + [self._pad] * (width - len(s)) for s, _ in rows])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s, _ in rows])
        labels = torch.tensor([t + [IGNORE_INDEX] * (twidth - len(t)) for _, t in rows])
        dev = self.device
        return {"input_ids": ids.to(dev), "attention_mask": mask.to(dev),
                "labels": labels.to(dev)}

    # -- the model -----------------------------------------------------------------------
    def _forward(self, batch: dict[str, Any], *, hidden: bool = False) -> Any:
        # the model builds the decoder inputs by shifting the labels right
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          labels=batch["labels"], output_hidden_states=hidden,
                          use_cache=False)

    def answer_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        """Decoder logits aligned with ``batch["labels"]`` (position t predicts label t)."""
        return self._forward(batch).logits

    def token_losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """NLL of each answer token and the answer-token mask, ``[batch, T]``."""
        return masked_token_nll(self.answer_logits(batch), batch["labels"])

    def per_example_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Mean NLL of each example's answer tokens (EOS included), shape ``[batch]``."""
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

            result["features"] = _mean_pool(out.encoder_last_hidden_state,
                                             batch["attention_mask"])
        return result

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        """The encoder's last hidden state mean-pooled over non-padding tokens."""
        from erasus_llm.causal_lm import _mean_pool

        out = self.model.get_encoder()(input_ids=batch["input_ids"],
                                       attention_mask=batch["attention_mask"])
        return _mean_pool(out.last_hidden_state, batch["attention_mask"])

    def generate_answers(self, questions: list[str], max_new_tokens: int,
                         batch_size: int = 32) -> tuple[list[str], int]:
        """Greedy answers to ``questions`` and the number of decoder steps run."""
        import torch

        model = self.model
        was_training = model.training
        model.eval()
        texts: list[str] = []
        steps = 0
        prompts = self.prompt_ids(questions)
        try:
            with torch.no_grad():
                for start in range(0, len(prompts), batch_size):
                    chunk = prompts[start:start + batch_size]
                    width = max(len(p) for p in chunk)
                    ids = torch.tensor([p + [self._pad] * (width - len(p)) for p in chunk])
                    mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in chunk])
                    out = model.generate(input_ids=ids.to(self.device),
                                         attention_mask=mask.to(self.device),
                                         max_new_tokens=int(max_new_tokens), do_sample=False,
                                         num_beams=1)
                    new = out[:, 1:].cpu()  # after the decoder start token
                    steps += int(new.shape[1])
                    eos = self.tokenizer.eos_token_id
                    for row in new.tolist():
                        if eos in row:
                            row = row[:row.index(eos)]
                        texts.append(self.tokenizer.decode(row, skip_special_tokens=True)
                                     .strip())
        finally:
            model.train(was_training)
        return texts, steps

    def parameter_groups(self) -> dict[str, list[str]]:
        """``all``, ``embeddings``, ``attention`` (self and cross), ``mlp``, ``encoder``,
        ``decoder``, ``lm_head`` and ``layer.<i>`` (the encoder's blocks, then the
        decoder's)."""
        names = [n for n, _ in self.model.named_parameters()]
        groups = {"all": names}
        for group, pattern in _GROUPS.items():
            groups[group] = [n for n in names if pattern.search(n)]
        blocks: dict[tuple[bool, int], list[str]] = {}
        for n in names:
            m = _BLOCK.match(n)
            if m:
                blocks.setdefault((m.group(1) == "decoder", int(m.group(2))), []).append(n)
        for i, key in enumerate(sorted(blocks)):
            groups[f"layer.{i}"] = blocks[key]
        by_tensor = {id(p): n for n, p in self.model.named_parameters()}

        def params_of(module: torch.nn.Module | None) -> list[str]:
            return [] if module is None else [by_tensor[id(p)] for p in module.parameters()
                                              if id(p) in by_tensor]

        groups["embeddings"] = params_of(self.model.get_input_embeddings())
        groups["lm_head"] = params_of(self.model.get_output_embeddings())
        return {k: list(dict.fromkeys(v)) for k, v in groups.items() if v}

    def reset_parameters(self) -> None:
        """Re-initialise every weight with the model's own init scheme (``init_weights``)."""
        from erasus_llm.causal_lm import hf_reset_parameters

        hf_reset_parameters(self.model, self.name)

    @classmethod
    def tiny_problem(cls, seed: int = 0) -> TinyProblem:
        """A tiny T5 trained from scratch on synthetic facts until it knows them."""
        from erasus_llm.tiny import tiny_qa_problem

        return tiny_qa_problem(lambda: cls.build(Seq2SeqLMParams()), seed, steps=300)
