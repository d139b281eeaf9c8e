"""The wheel works on its own: built from this checkout, it holds the prompt templates and only the two default
adapters (with every recipe and the retired adapters' cards) in at most 20 MB; installed into a fresh virtual
environment and used from another working directory, the defaults (shipped adapters, their cards, the prompt
templates) resolve from the installed package and rank.

Slow: it loads SmolLM2 and ml-100k from `LLMREC_HOME`. Building needs no network (`--no-build-isolation` with the
environment's setuptools); where that setuptools cannot build wheels, pip builds in isolation from the registry.
The fresh environment has no pip and no llmrec of its own: it sees this environment's site-packages (torch,
transformers, ...) through a .pth file, which leaves out the editable install of this checkout (a .pth file in a
folder that a .pth file adds is not read), and llmrec is installed into it from the wheel alone.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The design card's bound on the wheel (issue 29: "Wheel <= 20 MB").
MAX_WHEEL_BYTES = 20_000_000
DEFAULTS = {"listwise": "smollm2-ml100k-listwise-kg", "pointwise": "smollm2-ml100k-pointwise-residual"}
SHIPPED_PREFIX = "llmrec/_shipped/"

USE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import llmrec
    from llmrec import Reranker, RerankerConfig, load_dataset
    from llmrec.models.adapters import AdapterError, resolve_adapter

    dataset = load_dataset("ml-100k")
    # the listwise default, the LLM alone (its card's fusion gives the LLM weight 0: with it, the LLM is skipped);
    # given candidates, listed in co-occurrence order (its card)
    reranker = Reranker(dataset, RerankerConfig(mode="listwise", n_candidates=5, fusion=False))
    ranked = reranker.rank(["50", "172", "181"], ["1", "121", "174", "258", "300"])
    print(json.dumps({
        "package": str(Path(llmrec.__file__).resolve().parent),
        "editable": any("editable" in getattr(f, "__module__", "") for f in sys.meta_path),
        "adapter": ranked.adapter,
        "template": str(reranker.template.path.resolve()),
        "mode": ranked.mode,
        "candidate_order": reranker.candidate_order,
        "items": list(ranked.item_ids),
    }))
    # the default Reranker (pointwise): its card gives the LLM weight 0 over the default first stage, so it says so
    # and keeps the first stage's order; forced, the LLM runs, fused with the first-stage fit the wheel ships
    default = Reranker(dataset, RerankerConfig()).rank(["50", "172", "181"], ["1", "121", "174"])
    assert default.llm_skipped and default.prompt_tokens == 0, default.fusion
    pointwise = Reranker(dataset, RerankerConfig(force_llm=True))
    scored = pointwise.rank(["50", "172", "181"], ["1", "121", "174"])
    assert scored.fusion["members"] == ["zfusion"] and scored.llm_skipped is None and scored.prompt_tokens > 0
    try:
        resolve_adapter("smollm2-ml100k-pointwise-kg")
        retired = None
    except AdapterError as exc:
        retired = str(exc)
    print(json.dumps({
        "pointwise_adapter": pointwise.adapter_path,
        "template": str(pointwise.template.path.resolve()),
        "items": list(scored.item_ids),
        "retired": retired,
    }))
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


def _build_wheel(tmp_path: Path) -> Path:
    """A wheel of this checkout, built from a copy of what the build reads (the checkout is left as it is)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("llmrec", "prompts", "adapters"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(src)]
    if _can_build_offline():
        build.insert(5, "--no-build-isolation")
    subprocess.run(build, check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("llmrec-*.whl")
    return wheel


def _fresh_venv(tmp_path: Path, wheel: Path) -> tuple[Path, Path]:
    """A new virtual environment holding llmrec from `wheel` only; its python and its site-packages."""
    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    target = Path(purelib)
    # the dependencies, from this environment's site-packages (its editable-install .pth is not read from there)
    (target / "_llmrec_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        check=True,
        cwd=tmp_path,
    )
    return python, target


def _check_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert all(n.startswith(("llmrec/", "llmrec-")) for n in names), sorted(n for n in names if "/" not in n)
    prompts = {n[len(SHIPPED_PREFIX + "prompts/"):] for n in names if n.startswith(SHIPPED_PREFIX + "prompts/")}
    assert prompts == {p.name for p in (ROOT / "prompts").iterdir() if p.suffix in (".jinja", ".md", ".py")}
    weights = sorted(n for n in names if n.endswith(".safetensors"))
    assert weights == [f"{SHIPPED_PREFIX}adapters/{name}/adapter_model.safetensors" for name in sorted(DEFAULTS.values())]
    for name in DEFAULTS.values():
        for file in (ROOT / "adapters" / name).iterdir():
            assert f"{SHIPPED_PREFIX}adapters/{name}/{file.name}" in names
    for recipe in (ROOT / "adapters").glob("*.yaml"):  # every recipe, retired ones included
        assert f"{SHIPPED_PREFIX}adapters/{recipe.name}" in names
    retired = sorted(p.name for p in (ROOT / "adapters" / "retired").iterdir() if p.is_dir())
    assert len(retired) == 11
    for name in retired:
        assert f"{SHIPPED_PREFIX}adapters/retired/{name}/adapter_card.json" in names
        assert f"{SHIPPED_PREFIX}adapters/retired/{name}/README.md" in names
    assert "llmrec/models/adapter_readme.md.jinja" in names
    assert "llmrec/serve/inspector.html" in names  # the page `llmrec serve` answers at /


@pytest.mark.slow
def test_installed_wheel_is_lean_and_ranks_with_the_defaults_from_another_folder(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    size = wheel.stat().st_size
    assert size <= MAX_WHEEL_BYTES, f"{wheel.name} is {size:,} bytes"
    _check_contents(wheel)

    python, target = _fresh_venv(tmp_path, wheel)
    elsewhere = tmp_path / "elsewhere"
    for decoy in ("adapters", "prompts"):  # stray folders in the working directory must not be picked up
        (elsewhere / decoy).mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONNOUSERSITE"] = "1"
    run = subprocess.run([str(python), "-c", USE], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    first, second = (json.loads(line) for line in run.stdout.strip().splitlines()[-2:])
    package = Path(first["package"])
    assert package == (target / "llmrec").resolve() and not first["editable"]
    shipped = package / "_shipped"
    assert Path(first["adapter"]).resolve() == shipped / "adapters" / DEFAULTS["listwise"]
    assert Path(first["template"]) == shipped / "prompts" / "listwise_kg.jinja"
    assert first["mode"] == "listwise" and first["candidate_order"] == "cooc"
    assert sorted(first["items"]) == ["1", "121", "174", "258", "300"]
    assert Path(second["pointwise_adapter"]).resolve() == shipped / "adapters" / DEFAULTS["pointwise"]
    assert Path(second["template"]) == shipped / "prompts" / "pointwise_kg.jinja"
    assert sorted(second["items"]) == ["1", "121", "174"]
    recipe = shipped / "adapters" / "smollm2-ml100k-pointwise-kg.yaml"
    assert second["retired"] and f"its recipe is {recipe}" in second["retired"] and recipe.is_file()
    assert f"llmrec train --config {recipe} --output " in second["retired"]
