"""Answer labels that are exactly one token of the loaded tokenizer.

The listwise scorer reads every candidate's score from the logits of ONE forward pass: the logit of each
candidate's label token at the position right after the prompt. That only works if every label is a single token
*in that position*. Prompts end right after a newline (the chat template's assistant header, or the answer cue
line for base models), so labels are checked as the bare string following a newline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmrec.errors import ConfigError
from llmrec.prompts.templates import LABEL_POOLS

# The text prompts end with. Encoding CONTEXT + label and dropping CONTEXT's tokens gives the label's tokens
# as the model sees them after a prompt (this also copes with tokenizers that add a dummy-prefix space).
DEFAULT_CONTEXT = "Answer:\n"


class LabelTokenError(ConfigError):
    """A label or answer word is not exactly one token of the tokenizer."""


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def label_tokens(tokenizer: Any, label: str, context: str = DEFAULT_CONTEXT) -> list[int] | None:
    """The token ids `label` becomes when it follows `context`, or None if it merges into the context's last
    token (then it has no token of its own there)."""
    base = _encode(tokenizer, context)
    full = _encode(tokenizer, context + label)
    if full[: len(base)] != base:
        return None
    return full[len(base) :]


def _is_label_token(tokenizer: Any, label: str, toks: list[int] | None) -> bool:
    """One token that stands for the label itself (not an unknown-token fallback)."""
    if toks is None or len(toks) != 1:
        return False
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None and toks[0] == unk and label != getattr(tokenizer, "unk_token", None):
        return False
    decode = getattr(tokenizer, "decode", None)
    return decode is None or str(decode([toks[0]])).strip() == label.strip()


def label_token_ids(tokenizer: Any, labels: Sequence[str], context: str = DEFAULT_CONTEXT) -> list[int]:
    """The single token id of each label as it appears right after a prompt.

    Args:
        tokenizer: a Hugging Face tokenizer (anything callable returning ``input_ids``).
        labels: label strings, e.g. ``("A", "B")`` or answer words ``("Yes", "No")``.
        context: the text the prompt ends with; prompts built by `PromptBuilder` end with a newline.

    Raises:
        LabelTokenError: a label is not exactly one token there, or two labels share a token.

    Example:
        >>> label_token_ids(tokenizer, ["A", "B"])  # doctest: +SKIP
        [32, 33]
    """
    ids: list[int] = []
    for label in labels:
        toks = label_tokens(tokenizer, label, context)
        if toks is None or not _is_label_token(tokenizer, label, toks):
            name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
            if toks is None:
                what = "merges with the text before it"
            elif len(toks) == 1:
                what = f"becomes token {toks[0]} that does not decode to it (unknown token?)"
            else:
                what = f"is {len(toks)} tokens {toks}"
            raise LabelTokenError(
                f"label {label!r} {what} for tokenizer {name!r}, not exactly one token; use another label style"
            )
        ids.append(toks[0])
    if len(set(ids)) != len(ids):
        raise LabelTokenError(f"labels {list(labels)!r} do not map to distinct tokens: {ids}")
    return ids


def choose_labels(
    tokenizer: Any, n: int, style: str = "letters", context: str = DEFAULT_CONTEXT
) -> tuple[str, ...]:
    """The first `n` labels of `style` that are single, distinct tokens for `tokenizer`, in pool order.

    Labels that the tokenizer splits into several tokens are skipped (so a tokenizer without a single token for
    "I" gets A..H, J, ...).

    Raises:
        LabelTokenError: fewer than `n` labels of the style are single tokens.
        ConfigError: unknown style.
    """
    if style not in LABEL_POOLS:
        raise ConfigError(f"unknown label style {style!r}; known: {', '.join(LABEL_POOLS)}")
    chosen: list[str] = []
    seen: set[int] = set()
    for label in LABEL_POOLS[style]:
        if len(chosen) == n:
            break
        toks = label_tokens(tokenizer, label, context)
        if toks is not None and _is_label_token(tokenizer, label, toks) and toks[0] not in seen:
            chosen.append(label)
            seen.add(toks[0])
    if len(chosen) < n:
        name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
        raise LabelTokenError(
            f"tokenizer {name!r} has only {len(chosen)} single-token labels of style {style!r}, {n} needed"
        )
    return tuple(chosen)
