"""Optimizers and schedulers against torch.optim on identical parameters and grads."""
import numpy as np
import pytest

import edgetorch as et
from edgetorch import nn, optim


def _pair(torch, kind, **kw):
    rng = np.random.default_rng(0)
    p0 = [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)]
    mine = [nn.Parameter(p.copy()) for p in p0]
    theirs = [torch.nn.Parameter(torch.tensor(p.copy())) for p in p0]
    o1 = getattr(optim, kind)(mine, **kw)
    o2 = getattr(torch.optim, kind)(theirs, **kw)
    for step in range(5):
        grads = [rng.normal(size=p.shape).astype(np.float32) for p in p0]
        for p, g in zip(mine, grads):
            p.grad = et.tensor(g)
        for p, g in zip(theirs, grads):
            p.grad = torch.tensor(g)
        o1.step()
        o2.step()
        for a, b in zip(mine, theirs):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{kind} {kw} step {step}")
    return o1


@pytest.mark.oracle
@pytest.mark.parametrize("kind,kw", [
    ("SGD", dict(lr=0.1)), ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)), ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.3)),
    ("Adam", dict(lr=0.01)), ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01)), ("AdamW", dict(lr=0.02, betas=(0.8, 0.9), weight_decay=0.3)),
])
def test_optimizer_step_matches_torch(kind, kw):
    torch = pytest.importorskip("torch")
    _pair(torch, kind, **kw)


def test_optimizer_state_dict_round_trip():
    p = nn.Parameter(et.ones(3))
    o = optim.Adam([p], lr=0.1)
    p.grad = et.ones(3)
    o.step()
    sd = o.state_dict()
    q = nn.Parameter(p.detach().clone())
    o2 = optim.Adam([q], lr=0.5)
    o2.load_state_dict(sd)
    assert o2.param_groups[0]["lr"] == 0.1
    p.grad = q.grad = et.ones(3)
    o.step(), o2.step()
    np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy())


@pytest.mark.oracle
def test_schedulers_match_torch():
    torch = pytest.importorskip("torch")
    for name, kw in [("StepLR", dict(step_size=3, gamma=0.5)), ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01)),
                     ("LambdaLR", dict(lr_lambda=lambda e: 0.9 ** e))]:
        o1 = optim.SGD([nn.Parameter(et.ones(1))], lr=0.1)
        o2 = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
        s1 = getattr(optim.lr_scheduler, name)(o1, **kw)
        s2 = getattr(torch.optim.lr_scheduler, name)(o2, **kw)
        for _ in range(10):
            o1.step(), o2.step(), s1.step(), s2.step()
            assert s1.get_last_lr() == pytest.approx(s2.get_last_lr())


def test_clip_grad_norm():
    ps = [nn.Parameter(et.ones(4)), nn.Parameter(et.ones(9))]
    for p in ps:
        p.grad = et.full(tuple(p.shape), 2.0)
    n = nn.utils.clip_grad_norm_(ps, 1.0)
    assert n.item() == pytest.approx(np.sqrt(13 * 4))
    total = np.sqrt(sum((p.grad.numpy() ** 2).sum() for p in ps))
    assert total == pytest.approx(1.0, rel=1e-4)


def test_bad_hyperparameters_are_clear():
    with pytest.raises(et.EdgeTorchError, match="betas"):
        optim.Adam([nn.Parameter(et.ones(1))], betas=(1.5, 0.9))
    with pytest.raises(et.EdgeTorchError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
