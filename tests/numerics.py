"""Comparisons of floats that came out of other batchings or other CPU kernels, for tests that pass on any CPU.

A forward pass over another batch (other padding, another shared-prefix split) or under other kernels (AVX-512 vs
the default ones, MKL's conditional numerical reproducibility) reduces in another order, so its float32 outputs
differ in the last bits. Tolerances are therefore a number of epsilons of the values' scale, never a bare constant;
orders are compared only between items whose scores are further apart than that tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

FLOAT32_EPS = float(np.finfo(np.float32).eps)
BFLOAT16_EPS = 2.0**-7  # 8 significant bits

#: Epsilons of the values' scale that two batchings of one float32 forward pass may differ by: each of the model's
#: matmuls may round in another order (a few epsilons each, growing with depth), and a z-score over a handful of
#: candidates divides by their spread. Seen: ~1.5 epsilons on an AMD EPYC machine, ~0 on an Intel one.
BATCHING_EPSILONS = 256


def _finite(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values if math.isfinite(float(v))]


def batching_tolerance(values: Iterable[float], *, eps: float = FLOAT32_EPS) -> float:
    """The absolute tolerance for `values` recomputed in another batching: `BATCHING_EPSILONS` epsilons of their
    largest magnitude (at least 1, so values near 0 get the tolerance of unit-scale values)."""
    scale = max((abs(v) for v in _finite(values)), default=1.0)
    return BATCHING_EPSILONS * eps * max(scale, 1.0)


def approx_across_batchings(reference: Sequence[float] | Mapping[Any, float], *, eps: float = FLOAT32_EPS) -> Any:
    """`pytest.approx(reference)` with the tolerance of another batching (see `batching_tolerance`)."""
    values = reference.values() if isinstance(reference, Mapping) else reference
    return pytest.approx(reference, rel=0, abs=batching_tolerance(values, eps=eps), nan_ok=True)


def assert_same_ranking(
    ids: Sequence[str], scores: Sequence[float], ref_ids: Sequence[str], ref_scores: Sequence[float], *, tol: float
) -> None:
    """The two rankings hold the same items, with scores within `tol`, and order every pair whose reference scores
    differ by more than `tol` the same way (closer pairs may swap: a tie broken by the last bits)."""
    assert sorted(ids) == sorted(ref_ids)
    got, ref = dict(zip(ids, scores, strict=True)), dict(zip(ref_ids, ref_scores, strict=True))
    assert got == pytest.approx(ref, rel=0, abs=tol)
    position = {item: n for n, item in enumerate(ids)}
    for i, a in enumerate(ref_ids):
        for b in ref_ids[i + 1 :]:
            if ref[a] - ref[b] > tol:
                assert position[a] < position[b], f"{a} (score {ref[a]}) should rank above {b} (score {ref[b]})"
