from __future__ import annotations

import pytest

from llmrec.data.dataset import Dataset
from llmrec.errors import ConfigError
from llmrec.knowledge import KnowledgeGraph
from llmrec.types import Triple


def _sentences(facts):
    return [f.sentence for f in facts]


def test_sequel_link_ranks_first(kg, tiny):
    facts = kg.select_facts(["2", "4"], ["5"], items=tiny.items)["5"]
    assert facts[0].kind == "sequel_to" and facts[0].sentence == "sequel to Toy Story (1995)"
    assert facts[0].history_items == ("4",) and facts[0].sources == ("kg_tiny.kg",)
    assert "prequel of Toy Story 2 (1999)" in _sentences(kg.select_facts(["5"], ["4"], items=tiny.items)["4"])


def test_shared_people_are_counted_and_named_by_history_item(kg, tiny):
    facts = kg.select_facts(["6"], ["7"], items=tiny.items, max_per_candidate=5)["7"]
    sentences = _sentences(facts)
    assert "2 actors in common with Pulp Fiction (1994)" in sentences
    assert "same director as Pulp Fiction (1994)" in sentences
    actors = next(f for f in facts if f.kind == "actor")
    assert set(actors.entities) == {"m.jackson", "m.grier"}


def test_same_entity_shared_with_several_items_names_the_most_recent_first(kg, tiny):
    facts = kg.select_facts(["2", "4", "1"], ["3"], items=tiny.items)["3"]
    director = next(f for f in facts if f.kind == "director")
    assert director.sentence == "same director as Fargo (1996) and Blood Simple (1984)"
    assert director.history_items == ("1", "2")


def test_rarer_shared_entities_rank_higher(tiny):
    kg = KnowledgeGraph.from_dataset(tiny, metadata=False)
    # candidate 7 shares director m.tarantino (2 films) with 6; make a common "actor" shared by many films
    kg.add_triples(Triple(f"m.f{i}", "film.film.actor", "m.everyone", "x") for i in range(1, 12))
    facts = kg.select_facts(["6"], ["7"], max_per_candidate=5)["7"]
    by_kind = {f.kind: f for f in facts}
    assert by_kind["director"].score > by_kind["actor"].score / 3  # 3 actors, but one shared by every film
    everyone_only = kg.select_facts(["3"], ["7"], max_per_candidate=5)["7"]
    assert [f.kind for f in everyone_only] == ["actor"]
    assert everyone_only[0].score < by_kind["director"].score


def test_more_recent_history_items_weigh_more(kg, tiny):
    old = kg.select_facts(["6", "2", "3", "4", "5"], ["7"], items=tiny.items)["7"]
    new = kg.select_facts(["2", "3", "4", "5", "6"], ["7"], items=tiny.items)["7"]
    score = {f.kind: f.score for f in old}, {f.kind: f.score for f in new}
    assert score[1]["director"] > score[0]["director"]
    with pytest.raises(ConfigError, match="recency_half_life"):
        kg.select_facts(["6"], ["7"], recency_half_life=0)


def test_caps_budget_round_robin_and_determinism(kg, tiny):
    history, cands = ["2", "4", "6", "1"], ["3", "5", "7"]
    full = kg.select_facts(history, cands, items=tiny.items, max_per_candidate=3)
    assert all(1 <= len(f) <= 3 for f in full.values())
    assert all(
        f.tokens == len(f.sentence + "; ") // 4 + 1 for fs in full.values() for f in fs
    )  # the estimate
    first_round = sum(fs[0].tokens for fs in full.values())
    tight = kg.select_facts(history, cands, items=tiny.items, max_per_candidate=3, budget=first_round)
    # every candidate gets its best fact before any gets a second
    assert all(len(fs) == 1 and fs[0].sentence == full[c][0].sentence for c, fs in tight.items())
    assert sum(f.tokens for fs in tight.values() for f in fs) <= first_round
    counted = kg.select_facts(
        history, cands, items=tiny.items, budget=30, count_tokens=lambda s: len(s.split())
    )
    assert sum(f.tokens for fs in counted.values() for f in fs) <= 30
    assert kg.select_facts(history, cands, budget=0) == {c: [] for c in cands}
    assert kg.select_facts(history, cands, max_per_candidate=0) == {c: [] for c in cands}
    # deterministic, also for a graph built from the same triples in another order
    again = KnowledgeGraph.from_dataset(
        Dataset(tiny.name, tiny.items, list(tiny.interactions), triples=tiny.triples[::-1], links=tiny.links)
    )
    assert (
        again.select_facts(history, cands, items=tiny.items)
        == full
        == kg.select_facts(history, cands, items=tiny.items)
    )


def test_candidates_without_connections_get_no_facts(kg, tiny):
    facts = kg.select_facts(["3", "4"], ["12", "11"], items=tiny.items)  # comedies vs unlinked/other dramas
    assert facts == {"12": [], "11": []}
    assert kg.select_facts([], ["1"]) == {"1": []}


def test_named_entities_are_verbalised(tiny):
    kg = KnowledgeGraph.from_dataset(tiny)
    kg.add_names({"m.coen": "Joel Coen", "m.jackson": "Samuel L. Jackson", "m.grier": "Pam Grier"})
    assert "director Joel Coen, as in Fargo (1996)" in _sentences(
        kg.select_facts(["1"], ["2"], items=tiny.items)["2"]
    )
    actors = _sentences(kg.select_facts(["6"], ["7"], items=tiny.items, max_per_candidate=5)["7"])
    assert "actors Pam Grier, Samuel L. Jackson, as in Pulp Fiction (1994)" in actors


def test_genre_summary_counts_history_items(kg, tiny):
    facts = kg.select_facts(["1", "2", "6", "3"], ["7"], items=tiny.items, max_per_candidate=5)["7"]
    summary = [f for f in facts if f.kind in ("genre", "kg_genre", "decade")]
    assert len(summary) == 1  # one summary sentence per candidate at most
    assert summary[0].sentence == "shares genres Crime, Drama with 3 of the 4 history items"
