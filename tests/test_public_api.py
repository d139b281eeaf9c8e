"""The small public surface: the names a user needs come from `llmrec` itself, lazily, and `llmrec.ranking`
exports no internals."""

from __future__ import annotations

import subprocess
import sys


def test_top_level_names():
    import llmrec
    from llmrec import ModelConfig, Reranker, RerankerConfig, load_dataset
    from llmrec.data import load_dataset as data_load
    from llmrec.models import ModelConfig as models_config
    from llmrec.ranking import Reranker as ranking_reranker
    from llmrec.ranking import RerankerConfig as ranking_config

    assert load_dataset is data_load and ModelConfig is models_config
    assert Reranker is ranking_reranker and RerankerConfig is ranking_config
    assert {"load_dataset", "Reranker", "RerankerConfig", "ModelConfig"} <= set(llmrec.__all__) & set(dir(llmrec))
    try:
        llmrec.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("unknown attribute did not raise")


def test_import_llmrec_is_light():
    code = "import sys, llmrec; print(sorted(m for m in ('torch', 'transformers', 'faiss', 'llmrec.ranking') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_ranking_exports_no_internals():
    import llmrec.ranking as ranking

    assert not {"aggregate", "window_spans", "permutations", "sliding_window_order"} & set(ranking.__all__)
    assert {"Reranker", "RerankerConfig", "RankedList", "ListwiseScorer", "parse_ranking"} <= set(ranking.__all__)
    assert all(hasattr(ranking, name) for name in ranking.__all__)
