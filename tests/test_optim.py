"""AdamW against torch.optim.AdamW, clipping against clip_grad_norm_, and the cosine schedule."""

import copy
import math

import pytest
import torch
from torch.testing import assert_close

from lmlab.optim import AdamW, clip_grad_norm, cosine_schedule


def _train(optimizer_class, steps: int, **kwargs) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    optimizer = optimizer_class(model.parameters(), **kwargs)
    for _ in range(steps):
        x = torch.randn(32, 8)
        loss = (model(x) - x[:, :3]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01),
        dict(lr=3e-3, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.3),
        dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0),
    ],
)
def test_adamw_matches_torch_adamw(kwargs):
    ours = _train(AdamW, steps=25, **kwargs)
    reference = _train(torch.optim.AdamW, steps=25, **kwargs)
    for mine, theirs in zip(ours, reference, strict=True):
        assert_close(mine, theirs)


def test_adamw_honours_per_group_settings_and_skips_params_without_grad():
    a, b, frozen = (torch.nn.Parameter(torch.ones(3)) for _ in range(3))
    optimizer = AdamW([{"params": [a], "weight_decay": 0.0}, {"params": [b, frozen], "lr": 0.0}])
    (a.sum() + b.sum()).backward()
    optimizer.step()
    assert (a < 1).all() and torch.equal(b, torch.ones(3)) and torch.equal(frozen, torch.ones(3))
    assert frozen not in optimizer.state


def test_adamw_state_dict_round_trip_continues_identically():
    def fresh():
        torch.manual_seed(1)
        p = torch.nn.Parameter(torch.randn(5))
        return p, AdamW([p], lr=0.1, weight_decay=0.1)

    p, optimizer = fresh()
    for _ in range(3):
        optimizer.zero_grad()
        p.pow(2).sum().backward()
        optimizer.step()
    q, restored = fresh()
    q.data.copy_(p.data)
    restored.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # as a checkpoint would
    for param, opt in ((p, optimizer), (q, restored)):
        opt.zero_grad()
        param.pow(2).sum().backward()
        opt.step()
    assert_close(p, q)


@pytest.mark.parametrize("bad", [dict(lr=-1.0), dict(betas=(1.0, 0.9)), dict(eps=0.0)])
def test_adamw_rejects_bad_hyperparameters(bad):
    with pytest.raises(ValueError, match="AdamW"):
        AdamW([torch.nn.Parameter(torch.ones(1))], **bad)


@pytest.mark.parametrize("max_norm", [0.1, 1e3])
def test_clip_grad_norm_matches_torch(max_norm):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s)) for s in ((4, 5), (7,), (2, 3, 2))]
    for p in params:
        p.grad = torch.randn_like(p) * 3
    reference = [p.detach().clone().requires_grad_() for p in params]
    for r, p in zip(reference, params, strict=True):
        r.grad = p.grad.clone()
    norm = clip_grad_norm(params, max_norm)
    expected_norm = torch.nn.utils.clip_grad_norm_(reference, max_norm)
    assert_close(norm, expected_norm)
    for p, r in zip(params, reference, strict=True):
        assert_close(p.grad, r.grad)


def test_clip_grad_norm_ignores_params_without_grad():
    p, q = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    p.grad = torch.tensor([3.0, 4.0])
    assert clip_grad_norm([p, q], 1.0).item() == pytest.approx(5.0)
    assert p.grad.norm().item() == pytest.approx(1.0, rel=1e-5)


def test_cosine_schedule_warmup_decay_and_floor():
    lr_max, lr_min, warmup, cycle = 1.0, 0.1, 7, 21
    lrs = [cosine_schedule(t, lr_max, lr_min, warmup, cycle) for t in range(30)]
    assert lrs[:warmup] == pytest.approx([lr_max * t / warmup for t in range(warmup)])
    assert lrs[warmup] == pytest.approx(lr_max)
    assert lrs[14] == pytest.approx((lr_max + lr_min) / 2)  # halfway down the cosine
    assert lrs[10] == pytest.approx(lr_min + 0.5 * (1 + math.cos(math.pi * 3 / 14)) * 0.9)
    assert all(a >= b for a, b in zip(lrs[warmup:cycle], lrs[warmup + 1 : cycle + 1], strict=True))
    assert lrs[cycle:] == pytest.approx([lr_min] * (30 - cycle))


def test_cosine_schedule_without_warmup_starts_at_lr_max():
    assert cosine_schedule(0, 2.0, 0.0, 0, 10) == pytest.approx(2.0)
    assert cosine_schedule(10, 2.0, 0.0, 0, 10) == pytest.approx(0.0)
