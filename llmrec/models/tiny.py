"""Tiny random causal LMs and tokenizers built in code (no download), for fast offline tests of the pipeline.

The tokenizer is byte-level (every character is one token, so labels A..Z are single tokens) plus the answer
words "Yes"/"No" as whole tokens, ChatML special tokens and a chat template like SmolLM2's. The model is a
2-layer Llama with random weights: its scores mean nothing, but every code path (KV cache, padding, adapters,
quantisation) runs exactly as on a real model.

Example:
    >>> lm = tiny_loaded(seed=0)  # doctest: +SKIP
    >>> lm.model.config.num_hidden_layers  # doctest: +SKIP
    2
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmrec.models.config import ModelConfig
from llmrec.models.loading import LoadedModel

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
ANSWER_WORDS = ("Yes", "No")


def tiny_tokenizer(chat: bool = True) -> Any:
    """A byte-level tokenizer (one token per byte) with "Yes"/"No" as single tokens and ChatML specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.add_special_tokens(
        {
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        }
    )
    fast.add_tokens(list(ANSWER_WORDS))
    if chat:
        fast.chat_template = CHATML
    return fast


def tiny_model(
    tokenizer: Any,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    context: int = 4096,
    init_range: float = 0.2,
) -> Any:
    """A random `LlamaForCausalLM` sized for `tokenizer`. A larger `init_range` spreads the logits apart."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        initializer_range=init_range,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def save_tiny(folder: str | Path, *, seed: int = 0, **model_opts: Any) -> Path:
    """Save a tiny model and its tokenizer as a transformers folder (loadable with `load_model`)."""
    folder = Path(folder)
    tok = tiny_tokenizer()
    model = tiny_model(tok, seed=seed, **model_opts)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_loaded(*, seed: int = 0, chat: bool = True, **model_opts: Any) -> LoadedModel:
    """A `LoadedModel` around a fresh tiny model (not cached; its config names it ``tiny-<seed>``)."""
    tok = tiny_tokenizer(chat=chat)
    return LoadedModel(
        model=tiny_model(tok, seed=seed, **model_opts), tokenizer=tok, config=ModelConfig(f"tiny-{seed}")
    )
