"""SASRec's training pieces: the in-place full-softmax cross-entropy and the learning-rate schedule."""

import math

import pytest
import torch

from llmrec.errors import ConfigError
from llmrec.retrieval.sequential import (
    SCHEDULES,
    SasrecSettings,
    _full_softmax_cross_entropy,
    _lr_factor,
    _torch_parts,
)


def _reference(hidden, table, targets):
    hidden = hidden.detach().clone().requires_grad_()
    weight = table.detach().clone().requires_grad_()
    loss = torch.nn.functional.cross_entropy(hidden @ weight[1:].T, targets)
    loss.backward()
    return loss.detach(), hidden.grad, weight.grad


@pytest.mark.parametrize("rows", [37, 64])
def test_full_softmax_cross_entropy_matches_torch_loss_and_gradients(rows):
    generator = torch.Generator().manual_seed(rows)
    table = torch.randn(12, 8, generator=generator) * 3  # row 0 is padding, as in the model's item table
    hidden = torch.randn(rows, 8, generator=generator) * 3
    targets = torch.randint(0, 11, (rows,), generator=generator)
    expected_loss, expected_hidden, expected_table = _reference(hidden, table, targets)

    h = hidden.clone().requires_grad_()
    w = table.clone().requires_grad_()
    scratch = torch.full((64, 11), float("nan"))  # larger than needed; stale contents must not leak in
    loss = _full_softmax_cross_entropy().apply(h, w[1:], targets, scratch)
    (2.0 * loss).backward()  # a scaled upstream gradient is carried through

    torch.testing.assert_close(loss.detach(), expected_loss)
    torch.testing.assert_close(h.grad, 2.0 * expected_hidden)
    torch.testing.assert_close(w.grad, 2.0 * expected_table)
    assert torch.all(w.grad[0] == 0)  # the padding row gets no gradient


def test_full_softmax_cross_entropy_is_stable_for_large_logits():
    hidden = torch.tensor([[100.0, 0.0], [0.0, -100.0]], requires_grad=True)
    table = torch.tensor([[10.0, 0.0], [0.0, 10.0], [-10.0, 0.0]])
    loss = _full_softmax_cross_entropy().apply(hidden, table, torch.tensor([2, 0]), torch.empty(2, 3)).detach()
    expected = torch.nn.functional.cross_entropy(hidden.detach() @ table.T, torch.tensor([2, 0]))
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_full_softmax_cross_entropy_refuses_a_scratch_too_small():
    with pytest.raises(ValueError, match="cannot hold 4 x 3 logits"):
        _full_softmax_cross_entropy().apply(torch.zeros(4, 2), torch.zeros(3, 2), torch.zeros(4, dtype=torch.long),
                                            torch.empty(3, 3))  # fmt: skip


def test_cosine_schedule_warms_up_for_one_epoch_then_decays_to_zero():
    factor = _lr_factor("cosine", warmup=4, total=20)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(4) == 1.0
    assert factor(12) == pytest.approx(0.5)
    assert factor(19) < 0.05 and factor(20) == pytest.approx(0.0) and factor(25) == pytest.approx(0.0)
    values = [factor(s) for s in range(4, 21)]
    assert values == sorted(values, reverse=True)
    assert {_lr_factor("constant", 4, 20)(s) for s in range(30)} == {1.0}


def test_schedule_setting_is_validated():
    assert SasrecSettings().schedule in SCHEDULES
    with pytest.raises(ConfigError, match="sasrec schedule must be one of constant, cosine, wsd, got 'linear'"):
        SasrecSettings(schedule="linear")


def test_block_computes_what_torchs_pre_norm_encoder_layer_computes():
    torch.manual_seed(0)
    reference = torch.nn.TransformerEncoderLayer(
        16, 2, dim_feedforward=16, dropout=0.3, batch_first=True, norm_first=True
    ).eval()
    block = _torch_parts().Block(16, 2, 0.3).eval()
    block.norm1.load_state_dict(reference.norm1.state_dict())
    block.norm2.load_state_dict(reference.norm2.state_dict())
    block.qkv.weight.data.copy_(reference.self_attn.in_proj_weight)
    block.qkv.bias.data.copy_(torch.randn(48))
    reference.self_attn.in_proj_bias.data.copy_(block.qkv.bias)
    block.out.load_state_dict(reference.self_attn.out_proj.state_dict())
    block.ff1.load_state_dict(reference.linear1.state_dict())
    block.ff2.load_state_dict(reference.linear2.state_dict())
    x = torch.randn(3, 7, 16)
    causal = torch.triu(torch.ones(7, 7, dtype=torch.bool), diagonal=1)
    with torch.no_grad():
        expected = reference(x, src_mask=causal, is_causal=True)
        torch.testing.assert_close(block(x, causal), expected)
        x[:, -1] += 5.0  # causal: a later item changes no earlier position
        torch.testing.assert_close(block(x, causal)[:, :-1], expected[:, :-1])


def test_dropout_zeroes_a_share_p_scales_the_rest_and_backpropagates_through_the_same_mask():
    dropout = _torch_parts().dropout
    torch.manual_seed(0)
    x = torch.ones(200_000, requires_grad=True)
    y = dropout(x, 0.3, True)
    assert abs(float((y == 0).float().mean()) - 0.3) < 0.01
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())
    z = torch.randn(5)
    assert dropout(z, 0.3, False) is z and dropout(z, 0.0, True) is z
