from __future__ import annotations

import string

import pytest
from tokenizers_util import byte_tokenizer, gappy_tokenizer, merging_tokenizer

from llmrec.errors import ConfigError
from llmrec.prompts import LabelTokenError, PromptBuilder, choose_labels, label_token_ids


def test_byte_tokenizer_labels_are_single_distinct_tokens():
    tok = byte_tokenizer()
    labels = choose_labels(tok, 26)
    assert labels == tuple(string.ascii_uppercase)
    ids = label_token_ids(tok, labels)
    assert len(set(ids)) == 26
    assert [tok.decode([i]) for i in ids] == list(labels)
    assert choose_labels(tok, 9, "numbers") == tuple("123456789")


def test_letters_missing_from_a_vocabulary_are_skipped():
    tok = gappy_tokenizer()  # no token for I or O: they would be the unknown token
    assert choose_labels(tok, 12) == tuple("ABCDEFGHJKLM")
    with pytest.raises(LabelTokenError, match="'I'"):
        label_token_ids(tok, ["H", "I"])


def test_label_merging_with_the_prompt_end_is_rejected():
    tok = merging_tokenizer()  # "\nA" is one token, so "A" has no token of its own after a prompt
    assert choose_labels(tok, 3) == ("B", "C", "D")
    with pytest.raises(LabelTokenError, match="merges"):
        label_token_ids(tok, ["A"])
    # but in a context that does not end with a newline, "A" is fine
    assert len(label_token_ids(tok, ["A"], context="Answer: ")) == 1


def test_too_few_labels_and_unknown_style():
    with pytest.raises(LabelTokenError, match="10 needed"):
        choose_labels(byte_tokenizer(), 10, "numbers")
    with pytest.raises(ConfigError, match="roman"):
        choose_labels(byte_tokenizer(), 3, "roman")
    with pytest.raises(LabelTokenError, match="'AB'"):
        label_token_ids(byte_tokenizer(), ["AB"])


def test_builder_refuses_a_tokenizer_without_enough_labels(tiny):
    # listwise templates label up to 20 candidates: without I and O there are still 24 single-token letters;
    # a tokenizer whose answer words Yes/No are several tokens cannot serve pointwise templates
    builder = PromptBuilder(tiny, gappy_tokenizer(), "listwise")
    assert "I" not in builder.labels and len(builder.labels) == 20
    with pytest.raises(LabelTokenError):
        PromptBuilder(tiny, merging_tokenizer(), "pointwise")  # "Yes"/"No" are several character tokens


@pytest.mark.slow
def test_smollm2_labels_and_answer_words(smol_tok, tiny):
    labels = choose_labels(smol_tok, 20)
    assert labels == tuple(string.ascii_uppercase[:20])
    yes_no = label_token_ids(smol_tok, ["Yes", "No"])
    assert [smol_tok.decode([i]) for i in yes_no] == ["Yes", "No"]
    [prompt] = PromptBuilder(tiny, smol_tok, "listwise").build(["2", "3", "4"], ["1", "5", "6", "7"])
    base = smol_tok(prompt.text, add_special_tokens=prompt.add_special_tokens)["input_ids"]
    for label, token_id in zip(prompt.labels, prompt.answer_token_ids):
        full = smol_tok(prompt.text + label, add_special_tokens=prompt.add_special_tokens)["input_ids"]
        assert full == base + [token_id]
