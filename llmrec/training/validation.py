"""Periodic validation during training, scored by the same ranking scorers and metrics the evaluation uses.

Each validation group is one user's validation target among fixed sampled negatives; the prompts are rendered
once, and every evaluation scores them with the model as it is at that step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from llmrec.metrics import mean_metrics, ndcg_at, target_rank, user_metrics
from llmrec.ranking.factory import make_scorer
from llmrec.stats import mean_and_se, paired_gain
from llmrec.training.config import metric_name
from llmrec.training.examples import ExampleSpec

# The trainer compares validation steps with `llmrec.stats`'s paired gain; importable from here as before.
__all__ = ["Validator", "mean_and_se", "paired_gain"]

log = logging.getLogger(__name__)


class Validator:
    """Scores fixed validation groups with the ranking scorer and averages per-user metrics.

    Args:
        specs: validation groups (`sample_validation_specs`).
        builder: the `PromptBuilder` used for training (same template and knowledge).
        loaded: the `LoadedModel` the trained model came from (for its tokenizer and config).
        mode: "listwise" or "pointwise".
        metric: the selection metric (its value is always in the result, e.g. ``ndcg@10``).
        batch_size: prompts per forward pass.
    """

    def __init__(
        self,
        specs: Sequence[ExampleSpec],
        builder: Any,
        loaded: Any,
        *,
        mode: str,
        metric: str = "ndcg@10",
        batch_size: int = 4,
    ) -> None:
        self.specs = list(specs)
        self.loaded = loaded
        self.mode = mode
        self.metric = metric.lower()
        self.batch_size = batch_size
        self.prompts = [builder.build(list(s.history), list(s.candidates)) for s in self.specs]

    def evaluate(self, model: Any) -> tuple[dict[str, float], list[float]]:
        """Metrics of `model` (e.g. the PEFT model being trained) on the validation groups, averaged over users,
        and the selection metric of each group (in group order, for paired comparisons between steps)."""
        from llmrec.models import LoadedModel

        lm = LoadedModel(model=model, tokenizer=self.loaded.tokenizer, config=self.loaded.config)
        # Pointwise validation scores at least 8 candidate suffixes per pass, whatever the training batch size.
        batch = self.batch_size if self.mode == "listwise" else max(self.batch_size, 8)
        scorer = make_scorer(self.mode, lm, batch_size=batch)
        was_training = bool(getattr(model, "training", False))
        model.eval()
        try:
            results = scorer.score_many(self.prompts)
        finally:
            if was_training:
                model.train()
        rows = []
        kind, k = metric_name(self.metric)
        for spec, result in zip(self.specs, results):
            shown = list(result.candidate_ids)
            rank = target_rank(list(result.scores), shown.index(spec.target) if spec.target in shown else None)
            row = user_metrics(rank, len(shown))
            if kind == "ndcg" and self.metric not in row:
                assert k is not None
                row[self.metric] = ndcg_at(rank, k)
            rows.append(row)
        means = {key: round(value, 6) for key, value in mean_metrics(rows).items()}
        return means, [round(float(row[self.metric]), 6) for row in rows]

