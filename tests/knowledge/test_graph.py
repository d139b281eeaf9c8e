from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llmrec.data.dataset import Dataset
from llmrec.errors import ConfigError, DataFormatError
from llmrec.knowledge import KnowledgeGraph, KnowledgeSource, kind_for
from llmrec.knowledge.checks import check_alignment
from llmrec.types import Interaction, Item, Triple

EXTRA = Path(__file__).parents[1] / "data" / "kg_extra"


def _kinds(kg, item_id):
    return {(a.kind.name, a.entity) for a in kg.attributes(item_id)}


def test_from_dataset_fuses_kg_and_metadata_with_provenance(tiny, kg):
    stats = kg.stats()
    per_source = stats["triples_per_source"]
    assert per_source["kg_tiny.kg"] == len(tiny.triples)
    # one genre triple per (item, genre) and one decade triple per item with a year
    n_meta = sum(len(i.genres) for i in tiny.items.values()) + sum(
        i.year is not None for i in tiny.items.values()
    )
    assert per_source["metadata"] == n_meta
    assert stats["triples"] == len(tiny.triples) + n_meta
    assert stats["linked_items"] == len(tiny.items)
    assert len(kg) == stats["triples"]


def test_both_directions_count_once_and_uninformative_kinds_are_dropped(kg):
    attrs = [a for a in kg.attributes("1") if a.kind.name == "director"]
    assert [(a.entity, a.sources) for a in attrs] == [("m.coen", ("kg_tiny.kg",))]
    kinds = _kinds(kg, "1")
    assert ("writer", "m.coen") in kinds and ("actor", "m.buscemi") in kinds
    assert ("genre", "genre:Crime") in kinds and ("decade", "decade:1990s") in kinds
    assert not any(k == "language" for k, _ in kinds)  # weight 0: everyone speaks English
    assert kg.attributes("1") == kg.attributes("1")  # cached and deterministic
    assert [a.kind.name for a in kg.attributes("1")] == sorted(a.kind.name for a in kg.attributes("1"))


def test_degree_and_rarity(kg):
    assert kg.degree("director", "m.coen") == 3
    assert kg.degree("actor", "m.mcdormand") == 2
    assert kg.degree("genre", "genre:Drama") == 7
    assert (
        kg.rarity("actor", "m.mcdormand")
        > kg.rarity("director", "m.coen")
        > kg.rarity("genre", "genre:Drama")
    )


def test_sequel_links_between_items(kg):
    assert ("sequel_to", "m.f4") in _kinds(kg, "5")
    assert ("prequel_of", "m.f5") in _kinds(kg, "4")
    assert kg.linked_item("m.f4") == "4" and kg.items_of("m.f5") == ["5"]
    assert kind_for("film.film.sequel", "in").name == "sequel_to"


def test_add_and_remove_take_effect_at_the_next_lookup(kg):
    version = kg.version
    assert kg.attributes("3") and ("composer", "wd:x") not in _kinds(kg, "3")
    kg.add_triples([Triple("m.f3", "composer", "wd:x", "live"), Triple("m.f12x", "composer", "wd:x", "live")])
    assert kg.version > version
    assert ("composer", "wd:x") in _kinds(kg, "3")
    assert kg.neighbours("wd:x")[0] == Triple("m.f3", "composer", "wd:x", "live")
    assert kg.remove_triples(source="live") == 2
    assert ("composer", "wd:x") not in _kinds(kg, "3")
    assert (
        kg.remove_triples(where=lambda t: t.relation == "film.film.directed_by" and t.tail == "m.coen") == 3
    )
    # the inverse triples (film.director.film) still say it
    assert ("director", "m.coen") in _kinds(kg, "1")
    assert kg.remove_triples(source="no-such-source") == 0
    with pytest.raises(ConfigError):
        kg.remove_triples()
    with pytest.raises(ConfigError, match="empty"):
        kg.add_triples([Triple("", "r", "t")])


def test_extra_source_fused_through_its_link_table(tiny):
    src = KnowledgeSource("wikidata", EXTRA / "triples.tsv", EXTRA / "links.tsv", EXTRA / "names.tsv")
    kg = KnowledgeGraph.from_dataset(tiny, [src])
    per_source = kg.stats()["triples_per_source"]
    assert per_source["wikidata"] == 5 and per_source["wikidata-locations"] == 1  # 4th column wins
    assert "wd:Q1" in kg.entities_of("1") and "m.f1" in kg.entities_of("1")
    composer = [a for a in kg.attributes("1") if a.kind.name == "composer"]
    assert [(a.entity, a.sources) for a in composer] == [("wd:P_burwell", ("wikidata",))]
    assert kg.name_of("wd:P_burwell") == "Carter Burwell"
    facts = kg.select_facts(["2"], ["1"], items=tiny.items, max_per_candidate=10)["1"]
    assert "composer Carter Burwell, as in Blood Simple (1984)" in [f.sentence for f in facts]
    assert next(f for f in facts if f.kind == "composer").sources == ("wikidata",)


def test_bad_sources(tiny, tmp_path):
    none = KnowledgeSource("wd", EXTRA / "triples.tsv", EXTRA / "links_none.tsv")
    with pytest.raises(ConfigError, match="'wd': its link table links none"):
        KnowledgeGraph.from_dataset(tiny, [none])
    with pytest.raises(ConfigError, match="does not exist"):
        KnowledgeGraph.from_dataset(tiny, [KnowledgeSource("wd", tmp_path / "missing.tsv")])
    broken = tmp_path / "broken.tsv"
    broken.write_text("a\tb\tc\nonly\ttwo\n")
    with pytest.raises(DataFormatError, match="broken.tsv:2"):
        KnowledgeGraph.from_dataset(tiny, [KnowledgeSource("wd", broken)])
    with pytest.raises(ConfigError, match="name"):
        KnowledgeSource("", broken).load()


def test_a_kg_that_links_nothing_is_reported_and_yields_only_metadata_facts(tiny, caplog):
    unlinked = Dataset("unlinked", tiny.items, list(tiny.interactions), triples=tiny.triples, links={})
    with caplog.at_level(logging.WARNING):
        kg = KnowledgeGraph.from_dataset(unlinked)
    assert "links none" in caplog.text
    facts = kg.select_facts(["6", "1"], ["7"], items=tiny.items)
    assert all(f.sources == ("metadata",) for f in facts["7"])
    bare = KnowledgeGraph.from_dataset(unlinked, metadata=False)
    assert bare.select_facts(["6", "1"], ["7"]) == {"7": []}


def _saga(shift: int) -> Dataset:
    items: dict[str, Item] = {}
    triples, links = [], {}
    for n in range(12):
        items[f"{n}a"] = Item(f"{n}a", f"Saga{chr(65 + n)}word Begins", 1980)
        items[f"{n}b"] = Item(f"{n}b", f"Saga{chr(65 + n)}word Returns", 1985)
        triples.append(Triple(f"e{n}a", "film.film.sequel", f"e{n}b"))
    for n in range(12):
        links[f"{n}a"] = f"e{n}a"
        links[f"{n}b"] = f"e{(n + shift) % 12}b"
    return Dataset("saga", items, [Interaction("u", "0a", 0.0)], triples=triples, links=links)


def test_alignment_check_spots_a_shifted_link_table(caplog):
    good = check_alignment(KnowledgeGraph.from_dataset(_saga(0), on_misaligned="ignore"), _saga(0))
    assert good.sequel_pairs == 12 and good.title_overlap == 1.0 and not good.suspicious
    bad_ds = _saga(1)
    with caplog.at_level(logging.WARNING):
        kg = KnowledgeGraph.from_dataset(bad_ds)
    bad = check_alignment(kg, bad_ds)
    assert bad.sequel_pairs == 12 and bad.title_overlap == 0.0 and bad.suspicious
    assert "look misaligned" in caplog.text


def test_scale_columnar_store_and_lazy_index():
    kg = KnowledgeGraph()
    n = 200_000
    kg.add_links({str(i): f"film{i}" for i in range(2000)})
    kg.add_triples(
        Triple(f"film{i % 2000}", "film.film.actor", f"actor{i % 50_000}", "syn") for i in range(n)
    )
    assert len(kg) == n
    assert kg.degree("actor", "actor7") == len({j % 2000 for j in range(7, n, 50_000)})
    actors = {a.entity for a in kg.attributes("7") if a.kind.name == "actor"}
    assert actors == {f"actor{i % 50_000}" for i in range(7, n, 2000)}


def test_misaligned_links_can_be_dropped_or_refused():
    bad_ds = _saga(1)
    dropped = KnowledgeGraph.from_dataset(bad_ds, on_misaligned="drop")
    assert set(dropped.stats()["triples_per_source"]) == {"metadata"}
    assert dropped.entities_of("0b") == ["llmrec:item/0b"]  # the dataset's own links are gone, metadata stays
    assert not [a for a in dropped.attributes("0b") if a.kind.name == "sequel_to"]
    with pytest.raises(ConfigError, match="look misaligned"):
        KnowledgeGraph.from_dataset(bad_ds, on_misaligned="error")
    with pytest.raises(ConfigError, match="on_misaligned"):
        KnowledgeGraph.from_dataset(bad_ds, on_misaligned="shrug")
    kept = KnowledgeGraph.from_dataset(_saga(0), on_misaligned="error")  # aligned: nothing to refuse
    assert kept.stats()["triples_per_source"]["kg"] == 12


def test_remove_links(kg):
    assert "m.f1" in kg.entities_of("1")
    assert kg.remove_links("kg") == 11
    assert kg.entities_of("1") == ["llmrec:item/1"] and kg.linked_item("m.f1") is None
    assert not [a for a in kg.attributes("1") if a.kind.name == "director"]
