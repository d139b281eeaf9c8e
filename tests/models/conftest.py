"""Model tests load ``dtype="auto"`` as float32 on every CPU, whatever this machine's bfloat16 benchmark says
(`llmrec.models.machine`) and whatever its default; tests of the measured pick set the variable themselves."""

from __future__ import annotations

import pytest

from llmrec.models.machine import MEASURE_ENV


@pytest.fixture(autouse=True)
def _auto_is_float32_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MEASURE_ENV, "0")
