"""An offline byte-level BPE tokenizer for fresh tiny models (no download)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["SPECIAL_TOKEN", "bpe_tokenizer"]

#: GPT-2's convention: one special token serves as BOS, EOS and padding.
SPECIAL_TOKEN = "<|endoftext|>"


def bpe_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerBase:
    """A GPT-2 style byte-level BPE trained on ``texts``, as a transformers fast tokenizer.

    Byte-level, so it encodes any text (bytes the corpus never showed stay single-byte
    tokens); deterministic for the same texts and ``vocab_size``. The special token
    ``<|endoftext|>`` (id 0) is BOS, EOS and padding; nothing is added around encoded text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=int(vocab_size), special_tokens=[SPECIAL_TOKEN], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL_TOKEN,
                                   eos_token=SPECIAL_TOKEN, pad_token=SPECIAL_TOKEN)
