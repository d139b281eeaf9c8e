from __future__ import annotations

import pytest

from llmrec.errors import ConfigError
from llmrec.evaluation.config import ExperimentConfig
from llmrec.evaluation.protocols import EmptySplitError, build_cases, make_split, slice_membership, user_order
from llmrec.evaluation.runner import RetrieverPool


def cfg(**over):
    data = {"name": "t", "dataset": "tiny", "arms": [{"name": "pop", "kind": "popularity"}]}
    data.update(over)
    return ExperimentConfig.from_dict(data)


def test_sampled_cases(tiny):
    config = cfg(protocol={"kind": "sampled", "negatives": 9})
    split = make_split(tiny, config)
    users = user_order(split, config)
    cases = build_cases(split, config, users)
    tests = {x.user_id: x for x in split.test}
    valids = {x.user_id: x for x in split.valid}
    for case in cases:
        assert len(case.candidates) == 10 and len(set(case.candidates)) == 10
        assert case.candidates[case.target_index] == case.target == tests[case.user_id].item_id
        seen = {x.item_id for x in tiny.history(case.user_id)}
        assert not (set(case.candidates) - {case.target}) & seen  # negatives never interacted with
        # History: everything before the target, oldest first; includes the validation item, not the target.
        full = [x.item_id for x in tiny.history(case.user_id)]
        assert list(case.history) == full[: full.index(case.target)]
        assert valids[case.user_id].item_id in case.history
    # Deterministic, and a different seed gives other negatives.
    assert build_cases(split, config, users) == cases
    other = build_cases(split, cfg(protocol={"kind": "sampled", "negatives": 9}, seed=1), users)
    assert [c.candidates for c in other] != [c.candidates for c in cases]
    # The target is not always in the same slot.
    assert len({c.target_index for c in cases}) > 1


def test_user_order_prefix_is_the_sample(tiny):
    config = cfg()
    split = make_split(tiny, config)
    order = user_order(split, config)
    assert sorted(order) == sorted({x.user_id for x in split.test})
    assert user_order(split, config) == order
    assert user_order(split, cfg(seed=5)) != order


def test_too_many_negatives_is_an_error(tiny):
    config = cfg(protocol={"kind": "sampled", "negatives": 39})
    split = make_split(tiny, config)
    with pytest.raises(ConfigError, match="needs 39 negatives but user"):
        build_cases(split, config, user_order(split, config))


def test_empty_split_is_an_error(tiny):
    config = cfg(split={"positive_min_rating": 6.0})
    with pytest.raises(EmptySplitError, match="empty"):
        make_split(tiny, config)


def test_retrieved_cases_use_the_retriever_order(tiny):
    config = cfg(protocol={"kind": "retrieved", "retriever": "popularity", "k": 5})
    split = make_split(tiny, config)
    pool = RetrieverPool(split.train_dataset)
    cases = build_cases(split, config, user_order(split, config), pool)
    retriever = pool("popularity", {})
    for case in cases:
        assert case.candidates == tuple(c.item_id for c in retriever.retrieve(list(case.history), 5))
        assert case.target_present == (case.target in case.candidates)
        assert slice_membership(case, config)["target_retrieved"] == case.target_present


def test_a_quiet_pool_builds_retrievers_without_progress_bars(tiny, tmp_path, capsys):
    split = make_split(tiny, cfg())
    settings = {"dim": 8, "heads": 1, "blocks": 1, "max_epochs": 2}
    pool = RetrieverPool(split.train_dataset, progress=False)
    options = {"cache_dir": str(tmp_path / "alone"), "settings": settings}
    first = pool("sasrec", options)
    assert pool("sasrec", options) is first  # keyed on the options as given

    def fused(folder: str) -> dict:
        sasrec = {"cache_dir": str(tmp_path / folder), "settings": settings}
        return {"members": ["cooc", "sasrec"], "member_opts": {"sasrec": sasrec}}

    pool("fusion", fused("quiet"))  # fusion members too
    assert "sasrec" not in capsys.readouterr().err
    RetrieverPool(split.train_dataset, progress=True)("fusion", fused("loud"))
    assert "sasrec" in capsys.readouterr().err  # the bars are there when asked for
