"""Listwise verbalizer scoring: ONE forward pass per prompt, scores = label-token logits at the answer position.

The prompt labels its candidates (A, B, ...) and ends where the answer begins. The model's next-token logits,
computed for the last position only, are read at each label's token id; the score of a candidate is the log
probability of its label among the shown labels (a log-softmax over those logits, so scores of different
prompts are comparable).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmrec.ranking.base import (
    ScoreResult,
    Timer,
    answer_ids,
    check_context,
    check_finite,
    check_prompts,
    encode,
    supports_logits_to_keep,
)

if TYPE_CHECKING:
    from llmrec.models import LoadedModel
    from llmrec.prompts import RenderedPrompt

log = logging.getLogger(__name__)


def last_position_logits(lm: LoadedModel, sequences: Sequence[Sequence[int]]) -> Any:
    """Next-token logits after each sequence, shape ``(len(sequences), vocab)``, in ONE batched forward pass.

    Sequences are left-padded with explicit position ids, so every row's last real token sits in the last column
    and logits are computed for that column only (``logits_to_keep=1``), never for the whole sequence.
    """
    import torch

    model = lm.model
    width = max(len(s) for s in sequences)
    pad = lm.tokenizer.pad_token_id
    input_ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    device = lm.device
    kwargs: dict[str, Any] = {
        "input_ids": input_ids.to(device),
        "attention_mask": mask.to(device),
        "position_ids": position_ids.to(device),
        "use_cache": False,
    }
    if supports_logits_to_keep(model):
        kwargs["logits_to_keep"] = 1
    with torch.inference_mode():
        logits = model(**kwargs).logits
    return logits[:, -1, :].float()


class ListwiseScorer:
    """Scores labelled candidates from one forward pass per prompt.

    Args:
        lm: the loaded model.
        batch_size: prompts per forward pass in `score_many` (batching across users).

    Example:
        >>> scorer = ListwiseScorer(load_model("smollm2"))  # doctest: +SKIP
        >>> scorer.score(builder.build(history, candidates)).scores  # doctest: +SKIP
    """

    #: Bump when this scorer computes other scores from the same prompts (caches and the score memo key on it).
    VERSION = 1

    mode = "listwise"

    def __init__(self, lm: LoadedModel, batch_size: int = 4) -> None:
        self.lm = lm
        self.batch_size = max(1, int(batch_size))

    def score(self, prompts: Sequence[RenderedPrompt]) -> ScoreResult:
        return self.score_many([prompts])[0]

    def score_many(self, batch: Sequence[Sequence[RenderedPrompt]]) -> list[ScoreResult]:
        """Score several candidate sets (e.g. several users), `batch_size` prompts per forward pass."""
        import torch

        prepared = []
        for prompts in batch:
            check_prompts(prompts, self.mode)
            prompt = prompts[0]
            ids = encode(self.lm, prompt)
            check_context(self.lm, len(ids), what=f"listwise prompt ({len(prompt.candidate_ids)} candidates)")
            prepared.append((prompt, ids, answer_ids(self.lm, prompt, prompt.labels)))
        results: list[ScoreResult] = []
        for start in range(0, len(prepared), self.batch_size):
            chunk = prepared[start : start + self.batch_size]
            with Timer() as timer:
                logits = last_position_logits(self.lm, [ids for _, ids, _ in chunk])
            for row, (prompt, ids, label_ids) in enumerate(chunk):
                picked = logits[row, torch.tensor(label_ids)]
                check_finite(picked.tolist(), f"listwise prompt over {list(prompt.candidate_ids)}")
                logprobs = torch.log_softmax(picked, dim=-1).tolist()
                results.append(
                    ScoreResult(
                        candidate_ids=tuple(prompt.candidate_ids),
                        scores=tuple(float(x) for x in logprobs),
                        score_kind="label_logprob",
                        forward_passes=1,  # its row of a batched pass
                        prompt_tokens=len(ids),
                        encoded_tokens=len(ids),
                        seconds=timer.seconds / len(chunk),
                        details={
                            "label_logits": [float(x) for x in picked.tolist()],
                            "batch_rows": len(chunk),
                        },
                    )
                )
        return results
