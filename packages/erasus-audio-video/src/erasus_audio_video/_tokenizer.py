"""An offline byte-level tokenizer for fresh (tiny) Whisper models.

Whisper's real tokenizer needs its 50k-token vocabulary, which cannot be downloaded here.
A fresh model gets a byte-level BPE without merges instead: every UTF-8 byte is one token
(GPT-2's byte-to-unicode alphabet, ids 0..255, in byte order), so any transcript encodes
and decodes losslessly, plus Whisper's two special tokens that the seq2seq loss needs:
``<|endoftext|>`` (end of transcript, also used as padding, as in Whisper) and
``<|startoftranscript|>`` (the decoder start token). It is built in code, deterministic,
and saved with the model (``tokenizer.json``), so a saved model reloads it from its
directory. Models loaded from a real Whisper checkpoint use that checkpoint's tokenizer.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BOS", "EOS", "byte_tokenizer"]

EOS = "<|endoftext|>"
BOS = "<|startoftranscript|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map of the 256 bytes to printable unicode characters."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def byte_tokenizer() -> Any:
    """A ``PreTrainedTokenizerFast`` over bytes: ids 0-255 are bytes, 256 EOS, 257 BOS."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    mapping = _bytes_to_unicode()
    vocab = {mapping[b]: b for b in range(256)}
    vocab[EOS] = 256
    vocab[BOS] = 257
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(EOS, special=True), AddedToken(BOS, special=True)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS,
                                   pad_token=EOS, model_max_length=448)
