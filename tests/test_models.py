"""The recurrent LM's regularisers (AWD-LSTM): what each one drops, and that eval is untouched."""

from __future__ import annotations

import pytest
import torch

from charrnn.errors import UserError
from charrnn.lm.config import ModelConfig
from charrnn.lm.model import RNNLM
from charrnn.rnn.layers import Dropout, dropout


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_weight_drop_masks_the_recurrent_matrices_and_trains_the_originals(cell: str) -> None:
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(20, cell, layers=2, hidden=16, dropout=0.0, weight_drop=0.5))
    ids = torch.randint(0, 20, (3, 9))
    model.train()
    first, _ = model(ids)
    second, _ = model(ids)
    assert not torch.allclose(first, second)  # a new DropConnect mask per window
    first.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for name, p in model.rnn.named_parameters() if name.startswith("weight_hh"))
    model.eval()
    torch.testing.assert_close(model(ids)[0], model(ids)[0])  # no dropping in eval
    plain = RNNLM(ModelConfig(20, cell, layers=2, hidden=16, dropout=0.0)).eval()
    plain.load_state_dict(model.state_dict())  # same parameter names: checkpoints interchange
    torch.testing.assert_close(plain(ids)[0], model(ids)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_zeroes_a_share_p_scales_the_rest_and_passes_gradients_through_its_mask(
        dtype) -> None:
    """rnn.layers.dropout (the CPU mask from torch.rand): inverted dropout as F.dropout's, the
    same mask for the same seed; the Dropout module is the identity in eval mode or at p 0."""
    x = torch.ones(64, 32, 128, dtype=dtype, requires_grad=True)
    torch.manual_seed(3)
    y = dropout(x, 0.25)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.01 and y.dtype == dtype
    assert torch.all(y[kept] == torch.tensor(1 / 0.75, dtype=dtype))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x · mask)/dx = mask
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.25), y)
    module = Dropout(0.25).eval()
    assert module(x) is x and Dropout(0.0)(x) is x


def test_locked_dropout_uses_one_mask_for_every_time_step() -> None:
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(10, "gru", layers=1, hidden=32, dropout=0.5, locked_dropout=True))
    model.train()
    x = torch.ones(4, 7, 32)
    dropped = model._dropout(x)
    zero = dropped == 0
    assert zero.any() and (zero == zero[:, :1]).all()  # the same units off at every step
    assert not (zero[0] == zero[1]).all()  # but a mask of its own per row
    plain = RNNLM(ModelConfig(10, "gru", layers=1, hidden=32, dropout=0.5)).train()._dropout(x)
    assert not ((plain == 0) == (plain == 0)[:, :1]).all()  # ordinary dropout varies in time


def test_embed_drop_removes_whole_token_types() -> None:
    torch.manual_seed(1)
    model = RNNLM(ModelConfig(6, "gru", layers=1, hidden=8, embed_drop=0.5)).train()
    ids = torch.tensor([[0, 1, 2, 3, 4, 5] * 4])
    vectors = model._embed(ids)[0]
    gone = (vectors == 0).all(dim=1).view(4, 6)
    assert gone.any() and (gone == gone[:1]).all()  # a dropped type is dropped everywhere
    model.eval()
    torch.testing.assert_close(model._embed(ids), model.embed(ids))


@pytest.mark.parametrize("field", ["weight_drop", "embed_drop"])
def test_regulariser_rates_outside_0_1_are_user_errors(field: str) -> None:
    with pytest.raises(UserError, match=f"^{field} must be"):
        ModelConfig(10, **{field: 1.0})


@pytest.mark.parametrize("field", ["dropout", "weight_drop", "embed_drop"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_regulariser_rates_that_are_not_finite_are_user_errors(field: str, value: float) -> None:
    with pytest.raises(UserError, match=f"^{field} must be"):
        ModelConfig(10, **{field: value})


@pytest.mark.parametrize("message", [
    "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you "
    "tried to allocate 400000000000 bytes. Error code 12 (Cannot allocate memory)",
    "DefaultCPUAllocator: not enough memory: you tried to allocate 400000000000 bytes.",
    "CUDA out of memory. Tried to allocate 2.00 GiB",
])
def test_is_out_of_memory_recognises_cpu_and_gpu_allocators(message: str) -> None:
    from charrnn.devices import is_out_of_memory

    assert is_out_of_memory(RuntimeError(message))
    assert not is_out_of_memory(RuntimeError("size mismatch for head.weight"))
