from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tokenizers_util import byte_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def chat_tok():
    return byte_tokenizer(chat=True)


@pytest.fixture(scope="session")
def base_tok():
    return byte_tokenizer(chat=False)


@pytest.fixture(scope="session")
def smol_tok():
    from transformers import AutoTokenizer

    from llmrec.assets import ensure_asset

    return AutoTokenizer.from_pretrained(ensure_asset("smollm2"))
