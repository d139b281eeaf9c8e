from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from llmrec.io import atomic_write_dir, atomic_write_text


def test_atomic_write_text_replaces_whole_file_with_usual_permissions(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "report.md"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in target.parent.iterdir()] == ["report.md"]


def test_atomic_write_dir_keeps_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "index"
    with pytest.raises(RuntimeError), atomic_write_dir(target) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_dir_refuses_or_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "adapter"
    with atomic_write_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(FileExistsError), atomic_write_dir(target):
        pass
    with atomic_write_dir(target, overwrite=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert stat.S_IMODE(target.stat().st_mode) & 0o055  # readable by others, as a normal folder


def test_append_line_writes_a_header_once_and_recovers_from_a_cut_line(tmp_path):
    from llmrec.io import append_line

    path = tmp_path / "sub" / "log.jsonl"
    append_line(path, '{"a": 1}', header='{"h": 0}')
    append_line(path, '{"a": 2}', header='{"h": 0}')
    with path.open("a") as f:
        f.write('{"a": 3')  # a crash mid-line
    append_line(path, '{"a": 4}', fresh_line=True)
    assert path.read_text().splitlines() == ['{"h": 0}', '{"a": 1}', '{"a": 2}', '{"a": 3', '{"a": 4}']
