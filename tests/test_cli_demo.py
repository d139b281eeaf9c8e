from __future__ import annotations

import re

import pytest

from llmrec.cli import main


@pytest.mark.slow
def test_demo_shows_the_first_stage_beside_the_reranked_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "ml-100k: 943 users, 1682 items" in out
    assert re.search(r"^  zfusion\(sasrec [\d.]+, ease [\d.]+, dense [\d.]+\): weights fit on \d+ validation users", out, re.M)
    assert re.search(r"^  validation: ", out, re.M)
    rows = re.findall(r"^\s*(\d+) (.+?)\s{2,}(.+) \((=|up \d+|down \d+)\)$", out, flags=re.MULTILINE)
    assert [int(n) for n, *_ in rows] == list(range(1, 11))
    assert len({left for _, left, _, _ in rows}) == 10 and len({right for _, _, right, _ in rows}) == 10
    assert re.search(r"^times: data [\d.]+ s, first stage [\d.]+ s, retrieve", out, re.M)
