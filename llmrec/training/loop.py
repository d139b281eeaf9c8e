"""The pieces of the training loop that touch torch: batching, the answer-token loss, the step schedule.

The loss is computed at ONE position per example: the last prompt token, whose next-token logits are what the
scorers read. Prompts are left-padded with explicit position ids (0.. over the real tokens), so every example's
last real token is at the last position and the model sees the same positions as when it scores one prompt alone.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmrec.training.examples import TrainExample


@dataclass
class Batch:
    input_ids: Any  # LongTensor [B, T] (left-padded)
    attention_mask: Any  # LongTensor [B, T]
    position_ids: Any  # LongTensor [B, T]
    answer_ids: Any  # LongTensor [B]
    choice_ids: Any  # LongTensor [B, C] (padded with -1)
    answer_index: Any  # LongTensor [B]: index of the answer in choice_ids
    offsets: Any = None  # FloatTensor [B] added to the first choice's logit ("choices" loss), or None


def collate(examples: Sequence[TrainExample], tokenizer: Any, device: Any = None) -> Batch:
    """Left-pad a micro-batch of rendered examples into tensors."""
    import torch

    encoded = [ex.input_ids for ex in examples]
    width = max(len(ids) for ids in encoded)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    pad_id = 0 if pad_id is None else int(pad_id)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, seq in enumerate(encoded):
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    n_choices = max(len(ex.choice_ids) for ex in examples)
    choices = torch.full((len(examples), n_choices), -1, dtype=torch.long)
    for row, ex in enumerate(examples):
        choices[row, : len(ex.choice_ids)] = torch.tensor(ex.choice_ids, dtype=torch.long)
    answers = torch.tensor([ex.answer_id for ex in examples], dtype=torch.long)
    index = torch.tensor([ex.choice_ids.index(ex.answer_id) for ex in examples], dtype=torch.long)
    offsets = torch.tensor([ex.offset for ex in examples], dtype=torch.float32)
    batch = Batch(ids, mask, positions, answers, choices, index, offsets if bool(offsets.any()) else None)
    if device is not None:
        for name in ("input_ids", "attention_mask", "position_ids", "answer_ids", "choice_ids", "answer_index"):
            setattr(batch, name, getattr(batch, name).to(device))
        if batch.offsets is not None:
            batch.offsets = batch.offsets.to(device)
    return batch


def answer_logits(model: Any, batch: Batch) -> Any:
    """Next-token logits at the last prompt position, [B, vocab] (only that position goes through the LM head)."""
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        logits_to_keep=1,
        use_cache=False,
    )
    return out.logits[:, -1, :]


def answer_loss(logits: Any, batch: Batch, kind: str = "vocab") -> Any:
    """Cross-entropy of the answer token: over the vocabulary ("vocab") or over the answer choices ("choices"; a
    batch's `offsets` are added to its first choice's logit, pointwise Yes: the model learns the residual)."""
    import torch
    import torch.nn.functional as F

    logits = logits.float()
    if kind == "vocab":
        return F.cross_entropy(logits, batch.answer_ids)
    gathered = torch.gather(logits, 1, batch.choice_ids.clamp(min=0))
    gathered = gathered.masked_fill(batch.choice_ids < 0, float("-inf"))
    if batch.offsets is not None:
        gathered = torch.cat([gathered[:, :1] + batch.offsets.unsqueeze(1), gathered[:, 1:]], dim=1)
    return F.cross_entropy(gathered, batch.answer_index)


def micro_batch_order(n_examples: int, batch_size: int, epochs: float, seed: int) -> list[list[int]]:
    """Deterministic micro-batches (lists of example indices) for `epochs` passes, reshuffled each epoch.

    The order depends only on (n_examples, batch_size, seed), so a resumed run can skip exactly the micro-batches
    it already trained on. A fractional epoch takes a prefix of the last pass.
    """
    batches: list[list[int]] = []
    full = math.ceil(epochs)
    per_epoch = math.ceil(n_examples / batch_size)
    for epoch in range(full):
        order = list(range(n_examples))
        random.Random(seed * 1000003 + epoch).shuffle(order)
        chunks = [order[i : i + batch_size] for i in range(0, n_examples, batch_size)]
        if epoch == full - 1 and epochs < full:
            chunks = chunks[: max(1, round((epochs - epoch) * per_epoch))]
        batches.extend(chunks)
    return batches
