"""Greedy answers to a split's questions, generated once per (model, split) and shared.

Every ROUGE-based metric (``rouge``, ``model_utility``) reads them from the
:class:`~erasus.evaluation.EvalContext`: the model generates in batches (left padded,
greedy, up to ``max_new_tokens`` or its EOS) from the adapter's prompt for each
question. Each decoding step of a batch counts in ``ctx.forward_passes``.
"""

from __future__ import annotations

from typing import Any

from erasus.errors import IncompatibleComponentError

__all__ = ["greedy_answers", "greedy_continuations"]

_CACHE_ATTR = "_erasus_llm_generations"


def greedy_answers(ctx: Any, split: str, max_new_tokens: int, metric: str) -> list[str]:
    """The model's greedy answer to every question of ``split`` (decoded, special tokens
    and the EOS removed, whitespace stripped), cached per (split, max_new_tokens)."""
    from erasus_llm.metrics._cache import split_items

    cache: dict[Any, list[str]] = ctx.__dict__.setdefault(_CACHE_ATTR, {})
    key = (split, int(max_new_tokens))
    if key not in cache:
        items = split_items(ctx, split, metric)
        cache[key] = _generate(ctx, items, max_new_tokens, metric)
        counts = ctx.__dict__.setdefault("llm_generations", {})
        counts[key] = counts.get(key, 0) + 1
    return cache[key]


def greedy_continuations(ctx: Any, split: Any, prompt_field: str, max_new_tokens: int,
                         metric: str, *, items: list[dict[str, Any]] | None = None
                         ) -> list[str]:
    """The model's greedy continuation of the plain-text ``prompt_field`` of every item of
    ``split`` (no template; MUSE's verbatim prompts), cached per (split, field, length).
    With ``items`` (prompts a metric built), those are continued and ``split`` is only
    their cache key."""
    from erasus_llm.metrics._cache import split_items

    cache: dict[tuple[Any, ...], list[str]] = ctx.__dict__.setdefault(_CACHE_ATTR, {})
    key = (split, prompt_field, str(int(max_new_tokens)))
    if key not in cache:
        if items is None:
            items = split_items(ctx, split, metric)
        texts = [it.get(prompt_field) for it in items]
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise IncompatibleComponentError(
                f"metric '{metric}' needs a '{prompt_field}' string on every item of the "
                f"split '{split}'; item {bad} has {', '.join(sorted(items[bad]))}")
        tok = _tokenizer(ctx, metric)
        special = bool(getattr(ctx.adapter.params, "add_special_tokens", True))
        prompts = tok(texts, add_special_tokens=special)["input_ids"]
        if any(not p for p in prompts):
            raise IncompatibleComponentError(f"metric '{metric}': an empty prompt in '{split}'")
        cache[key] = _decode_greedy(ctx, [list(p) for p in prompts], max_new_tokens, metric)
    return cache[key]


def _tokenizer(ctx: Any, metric: str) -> Any:
    adapter = ctx.adapter
    tokenizer = getattr(adapter, "tokenizer", None)
    if tokenizer is None or not hasattr(adapter, "encode"):
        raise IncompatibleComponentError(
            f"metric '{metric}' generates text, which needs a causal language model "
            f"adapter (causal_lm); got '{getattr(adapter, 'name', adapter)}'")
    return tokenizer


def _generate(ctx: Any, items: list[dict[str, Any]], max_new_tokens: int, metric: str
              ) -> list[str]:
    answer = getattr(ctx.adapter, "generate_answers", None)
    if answer is not None:  # an encoder-decoder decodes after its encoder input
        from erasus import distributed

        questions = [it["question"] for it in items]
        lo, hi = distributed.share(len(questions))
        texts, steps = answer(questions[lo:hi], max_new_tokens,
                              batch_size=max(1, int(getattr(ctx, "batch_size", 32))))
        ctx.forward_passes = getattr(ctx, "forward_passes", 0) + steps
        return distributed.gather_shards(texts)
    _tokenizer(ctx, metric)
    encoded = ctx.adapter.encode([it["question"] for it in items],
                                 [it.get("answer") or "" for it in items])
    prompts = [ids[:sum(1 for lab in labels if lab == -100)] for ids, labels in encoded]
    return _decode_greedy(ctx, prompts, max_new_tokens, metric)


def _decode_greedy(ctx: Any, prompts: list[Any], max_new_tokens: int, metric: str
                   ) -> list[str]:
    import torch

    adapter = ctx.adapter
    tokenizer = adapter.tokenizer
    limit = getattr(adapter, "max_length", None)
    longest = max(len(p) for p in prompts)
    budget = int(max_new_tokens) if limit is None else min(int(max_new_tokens),
                                                           int(limit) - longest)
    if budget < 1:
        raise IncompatibleComponentError(
            f"metric '{metric}': the longest prompt ({longest} tokens) leaves no room to "
            f"generate within the model's {limit} positions")
    eos = tokenizer.eos_token_id
    pad = next((i for i in (tokenizer.pad_token_id, eos) if i is not None), 0)
    model = adapter.model
    was_training = model.training
    model.eval()
    batch_size = max(1, int(getattr(ctx, "batch_size", 32)))
    texts: list[str] = []
    # data-parallel under torchrun: this process decodes its share, then all are gathered
    from erasus import distributed

    lo, hi = distributed.share(len(prompts))
    prompts = prompts[lo:hi]
    try:
        with torch.no_grad():
            for start in range(0, len(prompts), batch_size):
                chunk = prompts[start:start + batch_size]
                width = max(len(p) for p in chunk)
                ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in chunk])
                mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
                out = model.generate(input_ids=ids.to(adapter.device),
                                     attention_mask=mask.to(adapter.device),
                                     max_new_tokens=budget, do_sample=False, num_beams=1,
                                     pad_token_id=pad, eos_token_id=eos)
                new = out[:, width:].cpu()
                ctx.forward_passes = getattr(ctx, "forward_passes", 0) + int(new.shape[1])
                for row in new.tolist():
                    if eos is not None and eos in row:
                        row = row[:row.index(eos)]
                    texts.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    finally:
        model.train(was_training)
    return distributed.gather_shards(texts)
