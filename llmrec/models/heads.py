"""A float32 output head for half-precision models, so that scores read from logits are not quantised.

A bfloat16 logit near 10 is a multiple of 1/16, near 20 of 1/8: a yes/no margin or a label log-probability read
from such logits takes a handful of values over 50 candidates, and ties decide the ranking. `float32_output_head`
makes the output projection of a bfloat16/float16 model compute in float32 (the hidden state and a float32 copy of
the head's weight, made once), so the logits keep the resolution the scores need; the transformer body still runs
in half precision. The weight itself stays as it is (tied input embeddings keep working).
"""

from __future__ import annotations

from typing import Any

from llmrec.models.loading import _unwrap

HALF_DTYPES = ("torch.bfloat16", "torch.float16")


def _module_class() -> Any:
    import torch
    import torch.nn.functional as F

    class Float32Head(torch.nn.Module):
        """Wraps an output projection (``nn.Linear``-like: ``weight``, optional ``bias``); computes it in float32."""

        def __init__(self, head: Any) -> None:
            super().__init__()
            self.head = head
            self._copy: Any = None
            self._copy_of: tuple[int, int] | None = None

        @property
        def weight(self) -> Any:
            return self.head.weight

        @property
        def bias(self) -> Any:
            return getattr(self.head, "bias", None)

        def _float_weight(self) -> Any:
            w = self.head.weight
            key = (w.data_ptr(), int(getattr(w, "_version", 0)))
            if self._copy is None or self._copy_of != key:  # made once; again only if the weight is replaced
                self._copy, self._copy_of = w.detach().float(), key
            return self._copy

        def forward(self, hidden: Any) -> Any:
            bias = self.bias
            return F.linear(hidden.float(), self._float_weight(), None if bias is None else bias.float())

    return Float32Head


_FLOAT32_HEAD: Any = None


def float32_head_class() -> Any:
    """The wrapper module class (built on first use, so importing this module does not import torch)."""
    global _FLOAT32_HEAD
    if _FLOAT32_HEAD is None:
        _FLOAT32_HEAD = _module_class()
    return _FLOAT32_HEAD


def has_float32_head(model: Any) -> bool:
    """Whether `model`'s output head computes in float32 through `float32_output_head`."""
    return isinstance(_unwrap(model).get_output_embeddings(), float32_head_class())


def float32_output_head(model: Any) -> bool:
    """Make a half-precision model's output head compute in float32; True when it now does (or already did).

    Models whose head is float32 already are left alone (False). Idempotent.
    """
    base = _unwrap(model)
    head = base.get_output_embeddings()
    if head is None:
        return False
    if isinstance(head, float32_head_class()):
        return True
    if str(head.weight.dtype) not in HALF_DTYPES:
        return False
    base.set_output_embeddings(float32_head_class()(head))
    return True
