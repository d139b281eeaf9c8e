"""The score memo: LLM scores keyed on the prompts, model, adapter and scoring code, reused across arm caches."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmrec.evaluation import load_config, run_experiment
from llmrec.evaluation.score_memo import ScoreMemo, prompts_key
from llmrec.ranking.base import ScoreResult

CONFIG = """
name: memo-exp
dataset: {dataset}
protocol: {{kind: sampled, negatives: 5}}
seed: 0
baseline: cooc
bootstrap_samples: 20
cache_dir: {cache}
results_dir: {results}
arms:
  - {{name: cooc, kind: cooc}}
  - {{name: tiny-llm, kind: llm, model: {model}, mode: pointwise, template: pointwise, users: 6}}
"""


@dataclass(frozen=True)
class Prompt:
    text: str
    candidate_ids: tuple[str, ...]
    answer_tokens: tuple[str, ...] = ("Yes", "No")
    add_special_tokens: bool = False


class CountingScorer:
    """Scores a prompt by its text length; counts the candidate sets it was asked for."""

    mode = "pointwise"

    def __init__(self) -> None:
        self.calls = 0

    def score_many(self, batch):
        self.calls += len(batch)
        return [
            ScoreResult(
                candidate_ids=tuple(c for p in prompts for c in p.candidate_ids),
                scores=tuple(float(len(p.text)) for p in prompts),
                score_kind="yes_no_margin",
                forward_passes=1,
                prompt_tokens=10,
                encoded_tokens=10,
                seconds=2.5,
            )
            for prompts in batch
        ]


def test_memo_scores_each_prompt_set_once_and_keeps_it_on_disk(tmp_path: Path):
    a = [Prompt("likes a?", ("a",)), Prompt("likes bb?", ("b",))]
    b = [Prompt("likes a?", ("a",)), Prompt("likes c?", ("c",))]
    inner = CountingScorer()
    memo = ScoreMemo(inner, tmp_path / "fp")
    first = memo.score(a)
    assert memo.score(a) == first and inner.calls == 1 and (memo.hits, memo.misses) == (1, 1)
    assert memo.replayed_seconds == 2.5  # a hit reports what scoring cost when it was scored
    memo.score_many([a, b])
    assert inner.calls == 2 and len(memo) == 2
    # another process (another writer file) and a later run see it; a line cut short by a crash is skipped
    with (tmp_path / "fp" / "main.jsonl").open("a") as f:
        f.write('{"key": "cut sh')
    later = ScoreMemo(CountingScorer(), tmp_path / "fp", writer="rank1")
    assert len(later) == 2 and later.score(b).scores == memo.score(b).scores and later.inner.calls == 0
    appended = ScoreMemo(CountingScorer(), tmp_path / "fp")
    appended.score([Prompt("new", ("d",))])
    lines = (tmp_path / "fp" / "main.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["result"]["candidate_ids"] == ["d"]  # written on a fresh line


def test_the_key_covers_text_answers_candidates_and_special_tokens():
    base = Prompt("t", ("a",))
    keys = {
        prompts_key([base]),
        prompts_key([Prompt("t ", ("a",))]),
        prompts_key([Prompt("t", ("b",))]),
        prompts_key([Prompt("t", ("a",), ("yes", "no"))]),
        prompts_key([Prompt("t", ("a",), add_special_tokens=True)]),
    }
    assert len(keys) == 5 and prompts_key([base]) == prompts_key([Prompt("t", ("a",))])


@pytest.fixture()
def memo_config(tmp_path: Path, tiny_dir: Path):
    from llmrec.models.tiny import save_tiny

    model = save_tiny(tmp_path / "tiny-model", seed=0)
    path = tmp_path / "exp.yaml"
    path.write_text(CONFIG.format(dataset=tiny_dir, cache=tmp_path / "cache", results=tmp_path / "r", model=model))
    return load_config(path)


def _llm_scores(result):
    return {u.user_id: u.scores for u in result.arms["tiny-llm"].users}


def _forbid_scoring(monkeypatch):
    from llmrec.ranking.pointwise import PointwiseScorer

    def refuse(self, prompts):
        raise AssertionError("the model was asked to score a prompt the memo holds")

    monkeypatch.setattr(PointwiseScorer, "score", refuse)


def test_a_stale_arm_cache_is_rescored_from_the_memo(memo_config, monkeypatch):
    first = run_experiment(memo_config, progress=False)
    assert first.arms["tiny-llm"].computed == 6
    (memo_config.cache_path() / "tiny-llm.jsonl").unlink()  # as a code change elsewhere would make it stale
    _forbid_scoring(monkeypatch)
    again = run_experiment(memo_config, progress=False)
    assert again.arms["tiny-llm"].computed == 6 and _llm_scores(again) == _llm_scores(first)
    with pytest.raises(AssertionError, match="memo holds"):  # without the memo the model must run
        (memo_config.cache_path() / "tiny-llm.jsonl").unlink()
        run_experiment(memo_config, progress=False, score_memo=False)


def test_another_model_gets_another_memo(tmp_path: Path):
    from llmrec.evaluation.score_memo import memo_fingerprint
    from llmrec.models import ModelConfig, load_model
    from llmrec.models.tiny import save_tiny
    from llmrec.ranking.pointwise import PointwiseScorer

    lms = [load_model(ModelConfig(str(save_tiny(tmp_path / f"m{s}", seed=s)))) for s in (0, 1)]
    prints = {memo_fingerprint(PointwiseScorer(lm), lm, None) for lm in lms}
    prints.add(memo_fingerprint(PointwiseScorer(lms[0]), lms[0], "adapter-digest"))
    prints.add(memo_fingerprint(PointwiseScorer(lms[0], use_prefix_cache=False), lms[0], None))
    merged = dataclasses.replace(lms[0], merged_adapter="lora")  # weights with the adapter merged round otherwise
    prints.add(memo_fingerprint(PointwiseScorer(merged), merged, "adapter-digest"))
    assert len(prints) == 5
