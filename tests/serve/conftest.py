"""Fixtures for the service: a tiny base model with two LoRA adapters on the KG fixture dataset (no download).

`ranker` gives the LLM weight 1 next to the co-occurrence first stage; `skipper`'s card gives it weight 0, so a
`Reranker` skips the LLM for it (as the shipped listwise default does).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest

DATA = Path(__file__).parents[1] / "data"
FIRST_STAGE = {"retriever": "cooc", "n_candidates": 6}


@pytest.fixture(scope="session")
def kg_tiny():
    from llmrec.data import load_dataset

    return load_dataset(DATA / "kg_tiny")


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """(base model folder, {adapter name: folder})."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmrec.models.adapters import AdapterCard, write_card
    from llmrec.models.tiny import save_tiny

    root = tmp_path_factory.mktemp("served")
    model_dir = save_tiny(root / "tiny-model", init_range=0.3)
    folders = {}
    for n, (name, llm_weight) in enumerate((("ranker", 1.0), ("skipper", 0.0))):
        peft_model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(model_dir),
            LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], init_lora_weights=False),
        )
        folder = root / name
        peft_model.save_pretrained(folder)
        (folder / "train_config.yaml").write_text("mode: pointwise\n")
        write_card(
            folder,
            AdapterCard(
                base_model=str(model_dir), name=name, mode="pointwise", template="pointwise_kg",
                fusion={"members": ["cooc"], "weights": [1.0], "llm_weight": llm_weight, "fitted": {"seed": n}},
            ),
        )  # fmt: skip
        folders[name] = str(folder)
    return model_dir, folders


@pytest.fixture(scope="session")
def service(served, kg_tiny):
    """One `RankService` for the session: both adapters on one tiny model."""
    from llmrec.errors import OlderCardWarning
    from llmrec.serve import RankService, ServeConfig

    model_dir, folders = served
    config = ServeConfig(
        dataset=str(DATA / "kg_tiny"),
        adapters=(folders["ranker"], folders["skipper"]),
        reranker={**FIRST_STAGE, "model": str(model_dir)},
        max_candidates=8,
        max_history=20,
        max_k=10,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OlderCardWarning)  # the test cards predate nothing worth a warning here
        return RankService(config, kg_tiny)


class Slowed:
    """The real service with every batch delayed (so that queues fill and timeouts pass); counts batches."""

    def __init__(self, service, delay):
        self._service, self.delay, self.ranked = service, delay, []

    def __getattr__(self, name):
        return getattr(self._service, name)

    def rank_group(self, key, jobs):
        time.sleep(self.delay)
        self.ranked.extend(jobs)
        return self._service.rank_group(key, jobs)


@pytest.fixture
def slowed_by(service):
    """`Slowed` copies of the session's service: ``slowed_by(seconds)``."""
    return lambda delay: Slowed(service, delay)
