"""Pointwise yes/no scoring with a shared-prefix KV cache.

One prompt per candidate; score = logit(yes) - logit(no) at the answer position. The prompts of one candidate
set share a long prefix (instructions, user history, shared context): its tokens are the longest common token
prefix of all the prompts. That prefix is run ONCE with ``use_cache=True``; its key/value cache is then
replicated over a batch of candidate suffixes, which are right-padded and run together, each row's score read
at its last real token. The result equals re-encoding every prompt in full (up to float rounding), which
``use_prefix_cache=False`` does, for comparison.

`score_many` scores several users' candidate sets in shared forward passes (as `llmrec serve` batches requests):
their prefixes run in one left-padded pass, and the suffix batches mix rows of different users, each row reading
its own user's cached prefix. Scores equal `score` per user up to float rounding.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmrec.ranking.base import (
    ScoreResult,
    Timer,
    answer_ids,
    cache_kwarg,
    check_context,
    check_finite,
    check_prompts,
    encode,
    output_cache,
    supports_logits_to_keep,
)

if TYPE_CHECKING:
    from llmrec.models import LoadedModel
    from llmrec.prompts import RenderedPrompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Prepared:
    """One candidate set, tokenized: a prompt per candidate, its answer tokens and the shared prefix."""

    candidate_ids: tuple[str, ...]
    seqs: list[list[int]]
    yes_id: int
    no_id: int
    prefix_len: int
    use_cache: bool


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by all sequences."""
    if not sequences:
        return 0
    first = sequences[0]
    n = min(len(s) for s in sequences)
    for i in range(n):
        tok = first[i]
        if any(s[i] != tok for s in sequences):
            return i
    return n


class PointwiseScorer:
    """Scores each candidate on its own yes/no prompt; shared prefix encoded once.

    Args:
        lm: the loaded model.
        batch_size: candidate suffixes per forward pass.
        use_prefix_cache: False re-encodes every prompt in full (the naive way; for benchmarks and checks).
        min_prefix_tokens: below this shared length the cache is not worth it and prompts run in full.
    """

    #: Bump when this scorer computes other scores from the same prompts (caches and the score memo key on it).
    VERSION = 1

    mode = "pointwise"

    def __init__(
        self, lm: LoadedModel, batch_size: int = 8, use_prefix_cache: bool = True, min_prefix_tokens: int = 16
    ) -> None:
        self.lm = lm
        self.batch_size = max(1, int(batch_size))
        self.use_prefix_cache = use_prefix_cache
        self.min_prefix_tokens = min_prefix_tokens

    def score_many(self, batch: Sequence[Sequence[RenderedPrompt]]) -> list[ScoreResult]:
        """Score several candidate sets (e.g. several users' requests) in shared forward passes.

        Each set's shared prefix is encoded once, all prefixes in one left-padded pass; the candidate suffixes of
        all sets are then run `batch_size` rows at a time, rows of different sets side by side. A set too short
        for the prefix cache (or the cache off) is scored on its own with `score`.
        """
        import torch

        sets = [self._prepare(prompts) for prompts in batch]
        shared = [n for n, s in enumerate(sets) if s.use_cache]
        results: dict[int, ScoreResult] = {}
        if len(shared) > 1:
            with Timer() as timer, torch.inference_mode():
                logits, passes = self._cached_many([sets[n] for n in shared])
            for n, user_logits, user_passes in zip(shared, logits, passes, strict=True):
                results[n] = self._result(sets[n], user_logits, user_passes, timer.seconds / len(shared))
        for n, prepared in enumerate(sets):
            if n not in results:
                results[n] = self._score_prepared(prepared)
        return [results[n] for n in range(len(sets))]

    def score(self, prompts: Sequence[RenderedPrompt]) -> ScoreResult:
        return self._score_prepared(self._prepare(prompts))

    # -- one candidate set --------------------------------------------------------------------------------------

    def _prepare(self, prompts: Sequence[RenderedPrompt]) -> _Prepared:
        """Check and tokenize one candidate set's prompts; find their shared prefix."""
        check_prompts(prompts, self.mode)
        words = tuple(prompts[0].answer_tokens)
        seqs = []
        for p in prompts:
            ids = encode(self.lm, p)
            check_context(self.lm, len(ids), what=f"pointwise prompt for candidate {p.candidate_ids[0]!r}")
            seqs.append(ids)
        yes_id, no_id = answer_ids(self.lm, prompts[0], words)
        prefix_len = min(common_prefix_length(seqs), min(len(s) for s in seqs) - 1)
        use_cache = self.use_prefix_cache and prefix_len >= self.min_prefix_tokens
        return _Prepared(tuple(p.candidate_ids[0] for p in prompts), seqs, yes_id, no_id, prefix_len, use_cache)

    def _score_prepared(self, prepared: _Prepared) -> ScoreResult:
        import torch

        with Timer() as timer, torch.inference_mode():
            if prepared.use_cache:
                logits, passes = self._cached(prepared.seqs, prepared.prefix_len)
            else:
                logits, passes = self._full(prepared.seqs)
        return self._result(prepared, logits, passes, timer.seconds)

    def _result(self, prepared: _Prepared, logits: Any, passes: int, seconds: float) -> ScoreResult:
        seqs, prefix_len = prepared.seqs, prepared.prefix_len
        yes_no = logits[:, [prepared.yes_id, prepared.no_id]]
        check_finite(yes_no.reshape(-1).tolist(), f"pointwise prompts over {list(prepared.candidate_ids)}")
        margins = (yes_no[:, 0] - yes_no[:, 1]).tolist()
        encoded = prefix_len + sum(len(s) - prefix_len for s in seqs) if prepared.use_cache else sum(map(len, seqs))
        return ScoreResult(
            candidate_ids=prepared.candidate_ids,
            scores=tuple(float(m) for m in margins),
            score_kind="yes_no_margin",
            forward_passes=passes,
            prompt_tokens=sum(len(s) for s in seqs),
            encoded_tokens=encoded,
            seconds=seconds,
            details={"prefix_tokens": prefix_len if prepared.use_cache else 0, "prefix_cache": prepared.use_cache},
        )

    # -- forward passes -----------------------------------------------------------------------------------------

    def _batches(self, seqs: Sequence[Sequence[int]]) -> list[list[int]]:
        """Row indices per batch, similar lengths together (less padding, fewer distinct last positions)."""
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _run(
        self,
        rows: Sequence[Sequence[int]],
        offset: int,
        cache: Any,
        prefix_mask: Any = None,
        offsets: Sequence[int] | None = None,
    ) -> Any:
        """Forward right-padded `rows` (after `offset` cached tokens); logits at each row's last real token.

        `prefix_mask` (rows x offset) marks each row's real cached tokens when the cache is left-padded; `offsets`
        are then each row's own prefix length (its first position)."""
        import torch

        model = self.lm.model
        device = self.lm.device
        width = max(len(r) for r in rows)
        pad = self.lm.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), offset + width), dtype=torch.long)
        mask[:, :offset] = 1 if prefix_mask is None else prefix_mask
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
            mask[i, offset : offset + len(r)] = 1
        last = torch.tensor([len(r) - 1 for r in rows])
        keep = torch.unique(last)  # sorted distinct last positions: logits only there
        starts = torch.tensor(list(offsets) if offsets is not None else [offset] * len(rows)).unsqueeze(1)
        kwargs: dict[str, Any] = {
            "input_ids": input_ids.to(device),
            "attention_mask": mask.to(device),
            "position_ids": (torch.arange(width).unsqueeze(0) + starts).to(device),
        }
        if cache is not None:
            kwargs[cache_kwarg(model)] = cache
            kwargs["use_cache"] = True
        else:
            kwargs["use_cache"] = False
        if supports_logits_to_keep(model):
            kwargs["logits_to_keep"] = keep.to(device)
            logits = model(**kwargs).logits  # (rows, len(keep), vocab)
            column = torch.searchsorted(keep, last)
        else:
            logits = model(**kwargs).logits
            column = last
        return logits[torch.arange(len(rows)), column.to(logits.device)].float().cpu()

    def _full(self, seqs: Sequence[Sequence[int]]) -> tuple[Any, int]:
        import torch

        out = torch.empty((len(seqs), self._vocab()), dtype=torch.float32)
        passes = 0
        for idx in self._batches(seqs):
            out[idx] = self._run([seqs[i] for i in idx], 0, None)
            passes += 1
        return out, passes

    def _cached(self, seqs: Sequence[Sequence[int]], prefix_len: int) -> tuple[Any, int]:
        import torch

        model = self.lm.model
        prefix = torch.tensor([list(seqs[0][:prefix_len])], dtype=torch.long, device=self.lm.device)
        kwargs: dict[str, Any] = {"input_ids": prefix, "use_cache": True}
        if supports_logits_to_keep(model):
            kwargs["logits_to_keep"] = 1
        prefix_cache = output_cache(model(**kwargs))
        if prefix_cache is None:
            log.warning("model returned no KV cache; scoring pointwise prompts without the prefix cache")
            return self._full(seqs)
        out = torch.empty((len(seqs), self._vocab()), dtype=torch.float32)
        passes = 1
        for idx in self._batches(seqs):
            cache = copy.deepcopy(prefix_cache)
            if len(idx) > 1:
                cache.batch_repeat_interleave(len(idx))
            out[idx] = self._run([seqs[i][prefix_len:] for i in idx], prefix_len, cache)
            passes += 1
        return out, passes

    def _cached_many(self, sets: Sequence[_Prepared]) -> tuple[list[Any], list[int]]:
        """Logits per set (rows aligned with its prompts) and the forward passes each set took part in."""
        import torch

        model = self.lm.model
        device = self.lm.device
        lengths = [s.prefix_len for s in sets]
        width = max(lengths)
        pad = self.lm.tokenizer.pad_token_id
        prefix_ids = torch.full((len(sets), width), pad, dtype=torch.long)
        prefix_mask = torch.zeros((len(sets), width), dtype=torch.long)
        for u, s in enumerate(sets):  # left-padded, so every prefix ends where the suffixes start
            prefix_ids[u, width - s.prefix_len :] = torch.tensor(s.seqs[0][: s.prefix_len], dtype=torch.long)
            prefix_mask[u, width - s.prefix_len :] = 1
        kwargs: dict[str, Any] = {
            "input_ids": prefix_ids.to(device),
            "attention_mask": prefix_mask.to(device),
            "position_ids": (prefix_mask.cumsum(-1) - 1).clamp(min=0).to(device),
            "use_cache": True,
        }
        if supports_logits_to_keep(model):
            kwargs["logits_to_keep"] = 1
        prefix_cache = output_cache(model(**kwargs))
        if prefix_cache is None:
            log.warning("model returned no KV cache; scoring pointwise prompts without the prefix cache")
            each = [self._full(s.seqs) for s in sets]
            return [logits for logits, _ in each], [passes for _, passes in each]
        rows = [(u, n) for u, s in enumerate(sets) for n in range(len(s.seqs))]
        suffixes = [sets[u].seqs[n][sets[u].prefix_len :] for u, n in rows]
        out = torch.empty((len(rows), self._vocab()), dtype=torch.float32)
        passes = [1] * len(sets)
        for idx in self._batches(suffixes):
            users = [rows[i][0] for i in idx]
            cache = copy.deepcopy(prefix_cache)
            cache.batch_select_indices(torch.tensor(users, device=device))
            out[idx] = self._run(
                [suffixes[i] for i in idx],
                width,
                cache,
                prefix_mask=prefix_mask[users],
                offsets=[lengths[u] for u in users],
            )
            for u in set(users):
                passes[u] += 1
        starts = [0]
        for s in sets:
            starts.append(starts[-1] + len(s.seqs))
        return [out[starts[u] : starts[u + 1]] for u in range(len(sets))], passes

    def _vocab(self) -> int:
        return int(self.lm.model.get_output_embeddings().weight.shape[0])
