"""The retriever registry: the one list of names, the lists other layers derive from it, and its properties."""

from __future__ import annotations

from typing import get_args

import pytest

from llmrec.errors import ConfigError
from llmrec.evaluation.config import RETRIEVER_ARM_KINDS
from llmrec.ranking.order import GIVEN, ORDER_SOURCES
from llmrec.retrieval import (
    RETRIEVER_NAMES,
    RETRIEVERS,
    CooccurrenceRetriever,
    DenseRetriever,
    IndexConfig,
    PopularityRetriever,
    RetrieverSpec,
    VectorIndex,
    build_retriever,
    retriever_names,
)
from llmrec.training.config import OFFSET_RETRIEVERS, NegativeSource

from .conftest import HISTORIES, ITEM_IDS

SASREC = {"settings": {"max_len": 4, "dim": 8, "heads": 1, "blocks": 1, "max_epochs": 1}}


def test_the_other_layers_lists_are_the_registrys():
    assert RETRIEVER_NAMES == tuple(RETRIEVERS) == (
        "cooc", "popularity", "dense", "llm_dense", "ease", "als", "sasrec", "zfusion", "fusion"
    )
    assert RETRIEVER_ARM_KINDS == RETRIEVER_NAMES
    assert ORDER_SOURCES == (GIVEN, *retriever_names(orders_candidates=True)) == (GIVEN, "cooc", "popularity", "dense")
    assert OFFSET_RETRIEVERS == retriever_names(scores_as_new=True)
    # A typing Literal cannot be built from a tuple (for a type checker): it restates the names, checked here.
    assert set(get_args(NegativeSource)) == {"random", *RETRIEVER_NAMES}
    assert len(get_args(NegativeSource)) == len(RETRIEVER_NAMES) + 1


def test_a_candidate_order_needs_scores_that_leave_the_user_out():
    with pytest.raises(ValueError, match="'x' orders candidates"):
        RetrieverSpec("x", None, scores_as_new=False, orders_candidates=True)


def _built(name, tiny, unit_vectors, tmp_path):
    if name == "dense":  # the real builder embeds with an asset model: the same class over given vectors
        index = VectorIndex.build(unit_vectors, ITEM_IDS, model="test", config=IndexConfig(kind="flat"))
        return DenseRetriever(index, PopularityRetriever.fit(tiny))
    if name == "llm_dense":  # the real builder reads a 1.5B model: the same builder over a tiny random decoder
        from llmrec.models.tiny import save_tiny

        model = save_tiny(tmp_path / "tiny-lm")
        return build_retriever(name, tiny, model=str(model), dtype="float32", layer=-1, progress=False)
    if name == "zfusion":  # over members that need no asset or training
        return build_retriever(name, tiny, members=["cooc", "popularity"])
    return build_retriever(name, tiny, progress=False, **({"settings": SASREC["settings"]} if name == "sasrec" else {}))


@pytest.mark.parametrize("name", [n for n in RETRIEVER_NAMES if n != "fusion"])
def test_scores_as_new_is_what_the_retriever_does(tiny, unit_vectors, tmp_path, monkeypatch, name):
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path))
    retriever = _built(name, tiny, unit_vectors, tmp_path)
    history, user_items = HISTORIES["u2"][:-1], HISTORIES["u2"]
    if RETRIEVERS[name].scores_as_new:
        assert len(retriever.score(history, ITEM_IDS, user_items=user_items)) == len(ITEM_IDS)
    else:
        with pytest.raises(ConfigError, match="cannot score items as new"):
            retriever.score(history, ITEM_IDS, user_items=user_items)


def test_unknown_names_list_the_registry(tiny):
    with pytest.raises(ConfigError, match="known: " + ", ".join(RETRIEVER_NAMES)):
        build_retriever("nope", tiny)


def test_a_fallback_over_another_catalogue_is_refused(tiny):
    cooc = CooccurrenceRetriever.fit(tiny)
    other = PopularityRetriever(ITEM_IDS[:-1], [1.0] * (len(ITEM_IDS) - 1))
    with pytest.raises(ConfigError, match="popularity fallback must cover the same catalogue as the cooc retriever"):
        CooccurrenceRetriever(cooc.item_ids, cooc.similarity, other)
