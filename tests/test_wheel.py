"""The wheel works on its own: built from this checkout, installed into a fresh folder and used from another working
directory, the defaults (shipped adapter, its card, the prompt templates) resolve from the installed package.

Slow: it loads SmolLM2 and ml-100k from `LLMREC_HOME`. Building needs no network (`--no-build-isolation` with the
environment's setuptools); where that setuptools cannot build wheels, pip builds in isolation from the registry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

USE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import llmrec
    from llmrec import Reranker, RerankerConfig, load_dataset

    reranker = Reranker(load_dataset("ml-100k"), RerankerConfig(n_candidates=5))
    # given candidates: no dense index to build; the default adapter lists them in co-occurrence order (its card)
    ranked = reranker.rank(["50", "172", "181"], ["1", "121", "174", "258", "300"])
    print(json.dumps({
        "package": str(Path(llmrec.__file__).resolve().parent),
        "adapter": ranked.adapter,
        "template": str(reranker.template.path.resolve()),
        "mode": ranked.mode,
        "candidate_order": reranker.candidate_order,
        "items": list(ranked.item_ids),
    }))
    pointwise = Reranker(load_dataset("ml-100k"), RerankerConfig(mode="pointwise"))
    print(json.dumps({"pointwise_adapter": pointwise.adapter_path, "template": pointwise.template.name}))
    """
)


def _can_build_offline() -> bool:
    try:
        from setuptools.command.bdist_wheel import bdist_wheel  # noqa: F401  (setuptools >= 70.1)
    except ImportError:
        try:
            import wheel  # noqa: F401
        except ImportError:
            return False
    return True


@pytest.mark.slow
def test_installed_wheel_ranks_with_the_default_adapter_from_another_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "llmrec", src / "llmrec", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(src)]
    if _can_build_offline():
        build.insert(5, "--no-build-isolation")
    subprocess.run(build, check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("llmrec-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        check=True,
        cwd=tmp_path,
    )
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "adapters").mkdir(parents=True)  # a stray adapters/ folder must not be picked up
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1"}
    run = subprocess.run(
        [sys.executable, "-c", USE], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stderr[-3000:]
    first, second = (json.loads(line) for line in run.stdout.strip().splitlines()[-2:])
    package = Path(first["package"])
    assert package == (target / "llmrec").resolve()
    assert Path(first["adapter"]).resolve() == package / "adapters" / "smollm2-ml100k-listwise-kg"
    assert Path(first["template"]) == package / "templates" / "listwise_kg.jinja"
    assert first["mode"] == "listwise" and first["candidate_order"] == "cooc"
    assert sorted(first["items"]) == ["1", "121", "174", "258", "300"]
    assert Path(second["pointwise_adapter"]).resolve() == package / "adapters" / "smollm2-ml100k-pointwise-kg"
    assert second["template"] == "pointwise_kg"
