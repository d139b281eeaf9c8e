from __future__ import annotations

import re

import pytest

from llmrec.cli import main


@pytest.mark.slow
def test_demo_ranks_ten_items_for_the_sample_user(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "ml-100k: 943 users, 1682 items" in out
    ranked = re.findall(r"^\s*(\d+)\.\s+-?\d+\.\d+\s+(\d+)\s", out, flags=re.MULTILINE)
    assert [int(rank) for rank, _ in ranked] == list(range(1, 11))
    assert len({item for _, item in ranked}) == 10
    assert "forward passes 1," in out
