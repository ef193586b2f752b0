"""CLIP's byte-level BPE vocabulary, read offline from the copy open_clip ships."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from erasus.errors import MissingDependencyError

__all__ = ["clip_bpe", "clip_tokenizer"]

_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
#: CLIP keeps the first 49,152 - 256 - 2 merges of the file (OpenAI's SimpleTokenizer).
_N_MERGES = 49152 - 256 - 2


def _bpe_path() -> Path:
    # find_spec locates the file without importing open_clip (which imports torchvision)
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the CLIP tokenizer's vocabulary comes with open_clip_torch; install it with "
            "pip install \"erasus[vlm]\"")
    return Path(next(iter(spec.submodule_search_locations))) / _BPE_FILE


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of bytes to printable characters (as CLIP uses it)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


@lru_cache(maxsize=1)
def clip_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's ``(vocab, merges)``: the 49,408 token ids of OpenAI's CLIP tokenizer."""
    import gzip

    lines = gzip.open(_bpe_path()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:_N_MERGES + 1]]
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges  # type: ignore[return-value]


def clip_tokenizer(model_max_length: int = 77) -> Any:
    """A transformers ``CLIPTokenizer`` with CLIP's real vocabulary, built offline.

    It gives the same token ids as OpenAI's tokenizer (and open_clip's), with
    ``<|startoftext|>`` = 49406 and ``<|endoftext|>`` = 49407 (also the padding token).
    """
    from transformers import CLIPTokenizer

    vocab, merges = clip_bpe()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges),
                         model_max_length=model_max_length)
