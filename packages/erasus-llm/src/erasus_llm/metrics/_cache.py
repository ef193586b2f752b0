"""The one forward pass per (model, split, answer field) that every LLM metric reads.

:func:`token_stats` runs the evaluated model once over the question/answer pairs of a
split (the answer taken from one field of the items: ``answer``, ``paraphrased_answer`` or
the list ``perturbed_answer``) and keeps, for every answer token (question masked, EOS
included, the adapter's own tokenisation and templates):

- ``logp``: ``log p(y_t | x, y_<t)``, the token's log-probability;
- ``mu`` and ``sigma``: the mean and standard deviation of ``log p(v)`` under the model's
  own next-token distribution ``p(. | x, y_<t)`` (what Min-K%++ standardises with);
- ``hit``: whether the greedy (argmax) next token is ``y_t`` (exact memorisation and
  extraction strength read it).

The field ``text`` is plain text (MUSE's raw and privleak splits): every token after the
first is scored, with no question, template or EOS.

On a masked LM (the ``masked_lm`` adapter) the answer tokens are all masked after the
question and each is scored at its own position (no shift): ``logp`` is the token's
log-probability given the question alone, ``hit`` whether it is the argmax there.
Continuations after a context are scored the same way; plain text without a context
(``text``) needs a causal LM.

The result is stored on the :class:`~erasus.evaluation.EvalContext`, so answer
probability, truth ratio, the MIA attacks, memorisation and perplexity share it, and so
is each (question, answer) pair's statistics: a pair that another split or field already
ran (TOFU's forget and forget_perturbed share their answers) is not run again. Each
batch run counts in ``ctx.forward_passes``; ``ctx.llm_passes[(split, field)]`` counts
how often each (split, field) was computed (once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from erasus.errors import IncompatibleComponentError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["TokenStats", "continuation_stats", "split_items", "token_stats"]

_CACHE_ATTR = "_erasus_llm_token_stats"
_SEQ_ATTR = "_erasus_llm_sequences"
#: Answer tokens whose vocabulary statistics are computed at once (bounds the memory of
#: the float32 log-softmax to about this many rows of the vocabulary).
_ROWS = 2048


@dataclass
class TokenStats:
    """Per-token statistics of the answers of one (split, field); one entry per sequence.

    For a list field (``perturbed_answer``) each example contributes one sequence per
    alternative and ``owner[j]`` is the example sequence ``j`` belongs to; for a string
    field ``owner`` is ``0..n-1``.
    """

    logp: list[np.ndarray]
    mu: list[np.ndarray]
    sigma: list[np.ndarray]
    hit: list[np.ndarray]
    owner: np.ndarray
    texts: list[str]
    n_examples: int

    def mean_logp(self) -> np.ndarray:
        """Length-normalised log-likelihood of each sequence: the mean token log-prob."""
        import numpy as np

        return np.array([float(lp.mean()) for lp in self.logp], dtype=np.float64)

    def per_example(self, values: np.ndarray) -> list[np.ndarray]:
        """``values`` (one per sequence) grouped by example, in example order."""
        import numpy as np

        values = np.asarray(values)
        return [values[self.owner == i] for i in range(self.n_examples)]


def split_items(ctx: Any, split: str, metric: str) -> list[dict[str, Any]]:
    """The items of ``split`` as a list of dicts; a clear error when the split is missing."""
    splits = getattr(ctx, "splits", None)
    if splits is None:
        raise IncompatibleComponentError(f"metric '{metric}' needs the benchmark's splits, "
                                         "but the evaluation context has none")
    try:
        data = splits.get(split)
    except KeyError:
        have = ", ".join(splits.names())
        raise IncompatibleComponentError(
            f"metric '{metric}' needs the split '{split}', which this data set does not have "
            f"(splits: {have}); use a data set with TOFU's splits (tofu) or set the metric's "
            "split parameters") from None
    items = [data[i] for i in range(len(data))]
    if not items:
        raise IncompatibleComponentError(f"metric '{metric}': the split '{split}' is empty")
    bad = next((i for i, it in enumerate(items) if not isinstance(it, dict)), None)
    if bad is not None:
        raise IncompatibleComponentError(
            f"metric '{metric}' needs question/answer dict items in '{split}', got a "
            f"{type(items[bad]).__name__}")
    return items


def _pairs(items: list[dict[str, Any]], split: str, field: str, metric: str
           ) -> tuple[list[str], list[str], list[int]]:
    questions, answers, owner = [], [], []
    for i, item in enumerate(items):
        value = item.get(field)
        if value is None or not isinstance(item.get("question"), str):
            raise IncompatibleComponentError(
                f"metric '{metric}' needs the field '{field}' (and 'question') on every item "
                f"of the split '{split}'; item {i} has {', '.join(sorted(item))}")
        alternatives = [value] if isinstance(value, str) else list(value)
        if not alternatives or not all(isinstance(a, str) for a in alternatives):
            raise IncompatibleComponentError(
                f"metric '{metric}': item {i} of '{split}' has no string '{field}'")
        for alt in alternatives:
            questions.append(item["question"])
            answers.append(alt)
            owner.append(i)
    return questions, answers, owner


def token_stats(ctx: Any, split: str, field: str = "answer", *, metric: str = "llm metric"
                ) -> TokenStats:
    """The :class:`TokenStats` of ``field`` on ``split`` for the context's model (one pass,
    then cached on the context)."""
    cache: dict[Any, TokenStats] = ctx.__dict__.setdefault(_CACHE_ATTR, {})
    key = (split, field)
    if key not in cache:
        items = split_items(ctx, split, metric)
        raw = field == "text"
        questions, answers, owner = (_texts(items, split, metric) if raw
                                     else _pairs(items, split, field, metric))
        cache[key] = _stats(ctx, questions, answers, owner, len(items), raw, metric)
        counts = ctx.__dict__.setdefault("llm_passes", {})
        counts[key] = counts.get(key, 0) + 1
    return cache[key]


def continuation_stats(ctx: Any, key: tuple[str, ...], contexts: list[str],
                       continuations: list[str], owner: list[int], n_examples: int,
                       metric: str) -> TokenStats:
    """The :class:`TokenStats` of plain-text ``continuations`` after plain-text
    ``contexts`` (lm-eval-harness's log-likelihood requests: the context is tokenised with
    the tokenizer's special tokens, the continuation without, no template and no EOS;
    only the continuation's tokens are scored), cached under ``key``."""
    cache: dict[Any, TokenStats] = ctx.__dict__.setdefault(_CACHE_ATTR, {})
    if key not in cache:
        cache[key] = _stats(ctx, list(contexts), list(continuations), owner, n_examples,
                            True, metric)
        counts = ctx.__dict__.setdefault("llm_passes", {})
        counts[key] = counts.get(key, 0) + 1
    return cache[key]


def _stats(ctx: Any, questions: list[Any], answers: list[str], owner: list[int],
           n_examples: int, raw: bool, metric: str) -> TokenStats:
    import numpy as np

    # a sequence another split, field or metric already ran is not run again
    memo: dict[tuple[Any, ...], tuple[Any, ...]] = ctx.__dict__.setdefault(_SEQ_ATTR, {})
    keys = [(raw, q, a) for q, a in zip(questions, answers, strict=True)]
    todo = [k for k in dict.fromkeys(keys) if k not in memo]
    if todo:
        ran = _run(ctx, [q for _, q, _ in todo], [a for _, _, a in todo], metric, raw=raw)
        memo.update(zip(todo, zip(*ran, strict=True), strict=True))
    rows = [memo[k] for k in keys]
    return TokenStats(*([r[i] for r in rows] for i in range(4)),
                      owner=np.asarray(owner, dtype=np.int64), texts=list(answers),
                      n_examples=n_examples)


def _texts(items: list[dict[str, Any]], split: str, metric: str
           ) -> tuple[list[None], list[str], list[int]]:
    bad = next((i for i, it in enumerate(items) if not isinstance(it.get("text"), str)), None)
    if bad is not None:
        raise IncompatibleComponentError(
            f"metric '{metric}' needs a 'text' string on every item of the split '{split}'; "
            f"item {bad} has {', '.join(sorted(items[bad]))}")
    return [None] * len(items), [it["text"] for it in items], list(range(len(items)))


def _raw_batch(adapter: Any, contexts: list[str | None], texts: list[str], metric: str
               ) -> dict[str, Any]:
    """Plain texts, scored after their context: with a context, its tokens (special tokens
    added) are masked and the text's (none added) scored; without one, every token of the
    text after the first (a BOS is put first when the tokenizer has one and did not add
    it). No template, no EOS; long contexts lose tokens from the start, down to
    ``max_length + 1`` tokens in all (lm-evaluation-harness's rule: the last token is only
    a target, so the model reads ``max_length``)."""
    import torch

    tok = adapter.tokenizer
    special = bool(getattr(adapter.params, "add_special_tokens", True))
    bos, limit = tok.bos_token_id, getattr(adapter, "max_length", None)
    rows, labels = [], []
    for context, text in zip(contexts, texts, strict=True):
        if context is None:
            try:
                ((ids, lab),) = adapter.encode_text([text])
            except IncompatibleComponentError as exc:
                raise IncompatibleComponentError(f"metric '{metric}': {exc}") from None
            rows.append(list(ids))
            labels.append(list(lab))
            continue
        head = list(tok(context, add_special_tokens=special)["input_ids"]) or \
            ([bos] if bos is not None else [])
        tail = list(tok(text, add_special_tokens=False)["input_ids"])
        if not head or not tail:
            raise IncompatibleComponentError(
                f"metric '{metric}': an empty context or continuation ({context[:40]!r}, "
                f"{text[:40]!r}) cannot be scored")
        # as lm-evaluation-harness: limit + 1 tokens, the last one a target, never an input
        if limit and len(head) + len(tail) > limit + 1:
            if len(tail) > limit:
                raise IncompatibleComponentError(
                    f"metric '{metric}': the continuation {text[:40]!r} alone fills the "
                    f"model's {limit} positions")
            head = head[len(head) + len(tail) - limit - 1:]
        rows.append(head + tail)
        labels.append([-100] * len(head) + tail)
    width = max(len(r) for r in rows)
    pad = next((i for i in (tok.pad_token_id, tok.eos_token_id) if i is not None), 0)
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    label_ids = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    device = adapter.device
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device),
            "labels": label_ids.to(device)}


def _seq2seq_raw_batch(adapter: Any, contexts: list[str | None], texts: list[str],
                       metric: str) -> dict[str, Any]:
    """Continuations after a context on an encoder-decoder: the context (special tokens
    added) is the encoder's input, the continuation (no EOS) the decoder's target."""
    if any(c is None for c in contexts):
        raise IncompatibleComponentError(
            f"metric '{metric}' scores plain text token by token from its start, which "
            "needs a causal language model (model causal_lm); the seq2seq_lm adapter scores "
            "answers (or continuations) after a question")
    sources = [list(ids) for ids in adapter.tokenizer([str(c) for c in contexts],
                                                      add_special_tokens=True)["input_ids"]]
    return adapter.pair_batch(sources, texts, append_eos=False)


def _is_masked(adapter: Any) -> bool:
    from erasus_llm.masked_lm import MaskedLMAdapter

    return isinstance(adapter, MaskedLMAdapter)


def _masked_raw_batch(adapter: Any, contexts: list[str | None], texts: list[str],
                      metric: str) -> dict[str, Any]:
    if any(c is None for c in contexts):
        raise IncompatibleComponentError(
            f"metric '{metric}' scores plain text token by token from its start, which "
            "needs a causal language model (model causal_lm); the masked_lm adapter scores "
            "answers (or continuations) after a question")
    return adapter.cloze_batch([str(c) for c in contexts], texts)


def _run(ctx: Any, questions: list[str | None], answers: list[str], metric: str, *,
         raw: bool = False) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    import torch
    from erasus import distributed

    adapter = ctx.adapter
    if not (hasattr(adapter, "prepare_batch") and hasattr(adapter, "tokenizer")):
        raise IncompatibleComponentError(
            f"metric '{metric}' needs a language model adapter (causal_lm or masked_lm) "
            f"that tokenises question/answer pairs; got '{getattr(adapter, 'name', adapter)}'")
    masked = _is_masked(adapter)
    # an encoder-decoder gives decoder logits aligned with its labels
    aligned = getattr(adapter, "answer_logits", None)
    # a masked LM predicts each masked answer token at its own position: no causal shift
    make_raw = _masked_raw_batch if masked else (_seq2seq_raw_batch if aligned else _raw_batch)
    extra = {} if masked else {"use_cache": False}
    model = adapter.model
    was_training = model.training
    model.eval()
    batch_size = max(1, int(getattr(ctx, "batch_size", 32)))
    out: tuple[list[Any], ...] = ([], [], [], [])
    # data-parallel under torchrun: this process scores its share, then all are gathered
    lo, hi = distributed.share(len(questions))
    questions, answers = questions[lo:hi], answers[lo:hi]
    try:
        with torch.no_grad():
            for start in range(0, len(questions), batch_size):
                if raw:
                    batch = make_raw(adapter, questions[start:start + batch_size],
                                     answers[start:start + batch_size], metric)
                else:
                    batch = adapter.prepare_batch({
                        "question": questions[start:start + batch_size],
                        "answer": answers[start:start + batch_size]})
                logits = aligned(batch) if aligned else _causal_logits(
                    model, batch, getattr(adapter, "max_length", None), extra)
                ctx.forward_passes = getattr(ctx, "forward_passes", 0) + 1
                shift = not (masked or aligned)
                for part, values in zip(out, _batch_stats(logits, batch["labels"],
                                                          shift=shift), strict=True):
                    part.extend(values)
    finally:
        model.train(was_training)
    return tuple(distributed.gather_shards(part) for part in out)  # type: ignore[return-value]


def _causal_logits(model: Any, batch: dict[str, Any], limit: int | None,
                   extra: dict[str, Any]) -> Any:
    """The model's logits over ``batch``; a batch one token wider than ``limit`` (a
    continuation that lm-evaluation-harness's truncation keeps at ``limit + 1`` tokens)
    runs without its last column, which is only ever a target, and the logits get a
    placeholder last column so positions still line up with the labels."""
    import torch

    ids, mask = batch["input_ids"], batch["attention_mask"]
    over = limit is not None and ids.shape[1] > limit
    if over:
        ids, mask = ids[:, :-1], mask[:, :-1]
    logits = model(input_ids=ids, attention_mask=mask, **extra).logits
    return torch.cat([logits, logits[:, -1:]], dim=1) if over else logits


def _batch_stats(logits: Any, labels: Any, *, shift: bool = True) -> tuple[list[Any], ...]:
    """Per-example arrays (logp, mu, sigma, hit) over the labelled positions; with
    ``shift`` (a causal LM) ``labels[:, t]`` is predicted by ``logits[:, t - 1]``, without
    (a masked LM) by ``logits[:, t]``."""
    import torch

    targets = labels[:, 1:] if shift else labels
    mask = targets != -100
    # [tokens, vocab]: the logits that predict each answer token
    rows = (logits[:, :-1] if shift else logits)[mask]
    tgt = targets[mask]
    logp, mu, sigma, hit = [], [], [], []
    for s in range(0, len(rows), _ROWS):
        lsm = torch.log_softmax(rows[s:s + _ROWS].float(), dim=-1)
        p = lsm.exp()
        m = (p * lsm).sum(-1)
        var = (p * lsm.square()).sum(-1) - m.square()
        logp.append(lsm.gather(1, tgt[s:s + _ROWS, None]).squeeze(1))
        mu.append(m)
        sigma.append(var.clamp_min(0).sqrt())
        hit.append(lsm.argmax(-1) == tgt[s:s + _ROWS])
    counts = mask.sum(1).tolist()
    out = []
    for parts, dtype in ((logp, torch.float64), (mu, torch.float64), (sigma, torch.float64),
                         (hit, torch.bool)):
        flat = torch.cat(parts).cpu().to(dtype) if parts else torch.zeros(0, dtype=dtype)
        out.append([t.numpy() for t in torch.split(flat, counts)])
    return tuple(out)
