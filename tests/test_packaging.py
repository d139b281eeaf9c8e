"""The build configuration and the editable install: the package list in pyproject.toml is the source tree's, and
the shipped templates and adapters (top-level prompts/ and adapters/, mapped into the package as
``llmrec._shipped.prompts`` / ``llmrec._shipped.adapters``) resolve through the import system from any working
directory. The wheel itself is tested in test_wheel.py (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import llmrec
from llmrec._shipped import shipped_folder
from llmrec.errors import ConfigError

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
SHIPPED = {"llmrec._shipped.prompts": "prompts", "llmrec._shipped.adapters": "adapters"}


def test_pyproject_lists_every_package_of_the_source_tree_and_maps_the_shipped_folders():
    code = sorted(
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "llmrec").rglob("__init__.py")
        if "__pycache__" not in init.parts
    )
    assert sorted(SETUPTOOLS["packages"]) == sorted([*code, *SHIPPED]), "add the new package to pyproject.toml"
    assert SETUPTOOLS["package-dir"] == SHIPPED
    for package, folder in SHIPPED.items():
        assert (ROOT / folder / "__init__.py").is_file() and not (ROOT / folder).is_symlink()
        assert package in PYPROJECT["tool"]["setuptools"]["package-data"]
    assert not (ROOT / "llmrec" / "templates").exists() and not (ROOT / "llmrec" / "adapters").exists()


def test_an_unknown_or_missing_shipped_folder_is_named(monkeypatch):
    with pytest.raises(ConfigError, match="must be one of prompts, adapters, got 'recipes'"):
        shipped_folder("recipes")
    import llmrec._shipped as shipped

    def missing(name: str):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(shipped, "import_module", missing)
    with pytest.raises(ConfigError, match=r"shipped prompts \(package llmrec._shipped.prompts.*reinstall llmrec"):
        shipped_folder("prompts")


RESOLVE = """
import json
from llmrec.models.adapters import DEFAULT_ADAPTERS, resolve_adapter, shipped_adapter_dir
from llmrec.prompts import builtin_template_dir, load_template
print(json.dumps({
    "prompts": str(builtin_template_dir()),
    "template": str(load_template("pointwise_kg").path),
    "adapters": str(shipped_adapter_dir()),
    "defaults": {mode: str(resolve_adapter(name)) for mode, name in DEFAULT_ADAPTERS.items()},
}))
"""


def test_an_editable_install_resolves_templates_and_adapters_from_the_checkout_folders(tmp_path: Path):
    if Path(llmrec.__file__).resolve().parent != ROOT / "llmrec":
        pytest.skip("llmrec is not imported from this checkout (not an editable install of it)")
    for folder in ("prompts", "adapters/smollm2-ml100k-listwise-kg"):  # decoys in the working directory
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "prompts" / "pointwise_kg.jinja").write_text("not a template")
    (tmp_path / "adapters" / "smollm2-ml100k-listwise-kg" / "adapter_config.json").write_text("{}")
    run = subprocess.run([sys.executable, "-c", RESOLVE], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(found["prompts"]) == ROOT / "prompts"
    assert Path(found["template"]) == ROOT / "prompts" / "pointwise_kg.jinja"
    assert Path(found["adapters"]) == ROOT / "adapters"
    assert {m: Path(p) for m, p in found["defaults"].items()} == {
        "listwise": ROOT / "adapters" / "smollm2-ml100k-listwise-kg",
        "pointwise": ROOT / "adapters" / "smollm2-ml100k-pointwise-residual",
    }
