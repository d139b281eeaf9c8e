"""Small real Hugging Face tokenizers built in code (no download), for offline unit tests.

- `byte_tokenizer`: byte-level BPE whose only merges build "Yes" and "No", so otherwise one token per byte:
  every letter is a single token and budgets are near byte counts (deterministic for golden tests). With ``chat=True`` it carries a
  ChatML chat template and ``<|im_start|>`` / ``<|im_end|>`` special tokens, like SmolLM2.
- `gappy_tokenizer`: a word-level tokenizer with no token for the letters I and O (they become the unknown
  token), to check that label selection skips letters a vocabulary lacks.
- `merging_tokenizer`: a character BPE whose merge joins a newline with a following "A" into one token, so "A"
  right after a prompt has no token of its own (a tokenizer that splits labels differently from the bare string).
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def byte_tokenizer(chat: bool = False) -> PreTrainedTokenizerFast:
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    for word in ("Ye", "Yes", "No"):
        vocab[word] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("Y", "e"), ("Ye", "s"), ("N", "o")]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    if chat:
        fast.chat_template = CHATML
    return fast


def gappy_tokenizer() -> PreTrainedTokenizerFast:
    words = [c for c in string.ascii_uppercase if c not in "IO"] + ["Answer", ":", "Yes", "No"]
    vocab = {"[UNK]": 0, **{w: n + 1 for n, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def merging_tokenizer() -> PreTrainedTokenizerFast:
    chars = sorted(set(string.ascii_letters + string.digits + string.punctuation + " \n"))
    vocab = {c: n for n, c in enumerate(chars)}
    vocab["\nA"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("\n", "A")]))
    return PreTrainedTokenizerFast(tokenizer_object=tok)
