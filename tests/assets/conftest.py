"""Shared fixtures of the asset tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrec import assets


@pytest.fixture
def converted(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Replace the GGUF conversion by a stand-in that records the joined file it was given (by file name)."""
    seen: dict[str, bytes] = {}

    def convert(gguf_dir: Path, gguf_file: str, dest: Path) -> None:
        seen[gguf_file] = (gguf_dir / gguf_file).read_bytes()
        (dest / "config.json").write_text("{}")

    monkeypatch.setattr(assets, "_convert_gguf", convert)
    return seen
