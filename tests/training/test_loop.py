"""Loop pieces: left-padded batches give each prompt's own next-token logits; losses; micro-batch order."""

from __future__ import annotations

import math

import pytest
import torch

from llmrec.training.examples import ExampleSpec, TrainExample
from llmrec.training.loop import answer_logits, answer_loss, collate, micro_batch_order


@pytest.fixture(scope="module")
def lm():
    from llmrec.models.tiny import tiny_loaded

    return tiny_loaded(seed=1, init_range=0.3)


def example(lm, text, answer_pos=0):
    ids = tuple(lm.tokenizer(text, add_special_tokens=False)["input_ids"])
    choices = tuple(lm.tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in "ABC")
    spec = ExampleSpec("u", (), "x", ("x",))
    return TrainExample(text, ids, choices[answer_pos], choices, spec)


def test_batched_logits_equal_the_scorers_one_prompt_logits(lm):
    from llmrec.ranking.listwise import last_position_logits

    examples = [example(lm, "a short prompt\n"), example(lm, "a considerably longer prompt than the first\n", 2)]
    batch = collate(examples, lm.tokenizer)
    assert batch.attention_mask[0].sum() == len(examples[0].input_ids)
    assert batch.input_ids.shape[1] == len(examples[1].input_ids)
    with torch.no_grad():
        logits = answer_logits(lm.model, batch)
    for row, ex in enumerate(examples):
        alone = last_position_logits(lm, [list(ex.input_ids)])[0]
        torch.testing.assert_close(logits[row].float(), alone, rtol=1e-4, atol=1e-4)


def test_choice_loss_is_a_restricted_cross_entropy(lm):
    examples = [example(lm, "prompt one\n", 1), example(lm, "prompt two!\n", 2)]
    batch = collate(examples, lm.tokenizer)
    with torch.no_grad():
        logits = answer_logits(lm.model, batch)
    vocab = answer_loss(logits, batch, "vocab")
    choices = answer_loss(logits, batch, "choices")
    assert math.isfinite(vocab.item()) and math.isfinite(choices.item())
    assert choices.item() < vocab.item()  # the same answer's probability among 3 tokens vs the whole vocabulary
    manual = torch.stack(
        [
            -torch.log_softmax(logits[r, list(ex.choice_ids)], -1)[ex.choice_ids.index(ex.answer_id)]
            for r, ex in enumerate(examples)
        ]
    ).mean()
    torch.testing.assert_close(choices, manual)


def test_offsets_move_the_first_choice_logit_in_the_choice_loss(lm):
    import dataclasses

    plain = [example(lm, "prompt one\n", 0), example(lm, "prompt two!\n", 1)]
    shifted = [dataclasses.replace(plain[0], offset=2.0), dataclasses.replace(plain[1], offset=-1.0)]
    assert collate(plain, lm.tokenizer).offsets is None
    batch = collate(shifted, lm.tokenizer)
    torch.testing.assert_close(batch.offsets, torch.tensor([2.0, -1.0]))
    with torch.no_grad():
        logits = answer_logits(lm.model, batch)
    moved = logits.clone()
    for row, ex in enumerate(shifted):
        moved[row, ex.choice_ids[0]] += ex.offset
    torch.testing.assert_close(answer_loss(logits, batch, "choices"), answer_loss(moved, collate(plain, lm.tokenizer), "choices"))
    assert answer_loss(logits, batch, "vocab").item() == pytest.approx(answer_loss(logits, collate(plain, lm.tokenizer), "vocab").item())


def test_micro_batch_order_is_deterministic_and_covers_each_epoch():
    order = micro_batch_order(10, 3, 2, seed=5)
    assert order == micro_batch_order(10, 3, 2, seed=5)
    assert order != micro_batch_order(10, 3, 2, seed=6)
    assert len(order) == 8
    assert sorted(i for b in order[:4] for i in b) == list(range(10))
    assert sorted(i for b in order[4:] for i in b) == list(range(10))
    assert len(micro_batch_order(10, 2, 0.4, seed=0)) == 2
