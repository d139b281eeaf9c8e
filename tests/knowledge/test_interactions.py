"""Collaborative evidence: counts against brute force, leave-user-out, and its place among the KG facts."""

from __future__ import annotations

from llmrec.data.dataset import Dataset
from llmrec.knowledge import KnowledgeGraph
from llmrec.knowledge.interactions import INTERACTIONS_SOURCE, InteractionEvidence
from llmrec.types import Interaction, Item

# user -> (item, rating); rating >= 4 is a like
RATINGS = {
    "u1": [("a", 5), ("b", 5), ("c", 4)],
    "u2": [("a", 5), ("b", 2), ("c", 5)],
    "u3": [("a", 4), ("c", 5), ("d", 5)],
    "u4": [("a", 5), ("d", 1)],
    "u5": [("b", 5), ("c", 5)],
}


def _dataset(ratings=RATINGS) -> Dataset:
    items = {i: Item(i, f"Film {i.upper()}", 1990) for i in "abcde"}
    inter = [Interaction(u, i, float(t), float(r)) for u, rs in ratings.items() for t, (i, r) in enumerate(rs)]
    return Dataset("cf", items, inter)


def test_co_liked_share_and_popularity_match_a_count_by_hand():
    dataset = _dataset()
    evidence = InteractionEvidence.fit(dataset, min_support=1)
    facts = {f.kind: f for f in evidence.facts("c", ["a"], recency={"a": 1.0}, items=dataset.items)}
    # 4 users liked a (u1..u4); of them u1, u2, u3 liked c: 75%.
    assert facts["co_liked"].sentence == "liked by 75% of those who liked Film A (1990)"
    assert facts["co_liked"].sources == (INTERACTIONS_SOURCE,) and facts["co_liked"].history_items == ("a",)
    # c is liked by 4 users, the most of all five items: the top 1 of 5 is the "top 25%" band.
    assert facts["popularity"].sentence == "liked by 4 users, among the top 25% of the catalogue"
    assert {f.kind for f in evidence.facts("e", ["a"], recency={"a": 1.0})} == {"popularity"}


def test_leaving_the_user_out_equals_counting_without_their_like():
    # u3 liked a and c: as a training example whose target is c, u3's own co-like must not count.
    dataset = _dataset()
    evidence = InteractionEvidence.fit(dataset, min_support=1)
    own = [i for i, r in RATINGS["u3"] if r >= 4]
    kwargs = {"recency": {"a": 1.0}, "items": dataset.items}
    left_out = {f.kind: f.sentence for f in evidence.facts("c", ["a"], user_items=own, **kwargs)}
    without = dict(RATINGS)
    without["u3"] = [("a", 4), ("c", 1), ("d", 5)]  # the same data with u3's like of c removed
    refit = InteractionEvidence.fit(_dataset(without), min_support=1)
    expected = {f.kind: f.sentence for f in refit.facts("c", ["a"], **kwargs)}
    assert left_out["co_liked"] == expected["co_liked"] == "liked by 50% of those who liked Film A (1990)"
    assert left_out["popularity"].startswith("liked by 3 users")


def test_graph_selects_evidence_with_the_kg_facts_and_can_show_it_alone():
    dataset = _dataset()
    kg = KnowledgeGraph.from_dataset(dataset, interactions=True)
    kg.evidence = InteractionEvidence.fit(dataset, min_support=1)
    chosen = kg.select_facts(["a", "b"], ["c", "d"], max_per_candidate=3, items=dataset.items)
    assert chosen["c"][0].kind == "co_liked"  # the strongest evidence leads, before metadata facts
    assert "popularity" in {f.kind for f in chosen["c"]}
    budgeted = kg.select_facts(["a", "b"], ["c", "d"], max_per_candidate=3, budget=12, items=dataset.items)
    assert sum(f.tokens for fs in budgeted.values() for f in fs) <= 12  # one token budget for all facts
    alone = KnowledgeGraph.from_dataset(dataset, triples=False, interactions=True)
    assert len(alone) == 0 and alone.evidence is not None
    assert alone.stats()["interaction_evidence"] is True
