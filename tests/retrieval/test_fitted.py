"""The first stage shipped fitted for ml-100k: seeded into the cache, used only where its key matches."""

from __future__ import annotations

import logging

import pytest

from llmrec.retrieval import fitted


def test_seeding_copies_what_the_cache_lacks_and_never_overwrites(tmp_path):
    shipped = fitted.shipped_fits()
    assert {p.name.split("-")[0] for p in shipped} == {"sasrec", "zfusion"}
    copied = fitted.seed_cache(tmp_path)
    assert sorted(p.name for p in copied) == sorted(p.name for p in shipped)
    assert all((tmp_path / p.name).read_bytes() == p.read_bytes() for p in shipped)
    assert not list(tmp_path.glob(".*partial"))  # written whole
    mine = tmp_path / shipped[0].name
    mine.write_bytes(b"the user's own")
    assert fitted.seed_cache(tmp_path) == [] and mine.read_bytes() == b"the user's own"


def test_an_unwritable_cache_is_left_alone_with_a_warning(tmp_path, caplog):
    blocker = tmp_path / "retrievers"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        assert fitted.seed_cache(blocker) == []
    assert "it is fitted instead" in caplog.text


@pytest.mark.slow
def test_the_default_first_stage_on_ml100k_loads_the_shipped_fit(tmp_path, monkeypatch):
    """A fresh LLMREC_HOME builds ml-100k's default first stage without training SASRec or refitting the weights.
    If this fails after a change that bumps a version, remake the shipped files (llmrec/retrieval/fitted/README.md)."""
    from llmrec.assets import llmrec_home
    from llmrec.data import load_dataset
    from llmrec.retrieval import build_retriever, sequential, zscore

    dataset = load_dataset("ml-100k")  # from the real cache, before LLMREC_HOME moves
    for asset in ("minilm",):
        (tmp_path / asset).symlink_to(llmrec_home() / asset)
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path))

    def refuse(*args, **kwargs):
        raise AssertionError("fitted instead of loading the shipped fit")

    monkeypatch.setattr(sequential, "_train", refuse)
    monkeypatch.setattr(zscore, "fit_weights", refuse)
    first_stage = build_retriever("zfusion", dataset, progress=False)
    assert first_stage.fit_record["users"] == 943 and len(first_stage.retrieve(["50", "172"], k=5)) == 5
